#!/usr/bin/env python3
"""`make demo`: the whole marketplace journey against a running Rentify, step by step.

Register an owner and a renter -> the owner verifies their identity (this script plays
the KYC provider and signs its webhook) -> lists a camera and publishes it -> the renter
finds it through search (with a typo) -> books it with an Idempotency-Key (and retries,
getting the same booking) -> the sandbox card is authorized -> the owner approves,
hands it over and takes it back -> both review each other -> the owner's rating and
wallet show the result, and the booking's ledger transfers are listed.

Usage: scripts/demo.py [--base-url http://127.0.0.1:8080]
Environment: RENTIFY_URL (default http://127.0.0.1:$PORT, PORT default 8080),
             KYC_WEBHOOK_SECRET (default the development secret `whsec_dev_kyc`).
Start the server first with `make run` (in another terminal). Only the standard library.
"""

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

PASSWORD = "Demo-journey-2026!x"
STEP = 0


def step(title):
    global STEP
    STEP += 1
    print(f"\n\033[1m{STEP:>2}. {title}\033[0m")


def note(text):
    print(f"    {text}")


class Api:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, token=None, body=None, headers=None, expect=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        except urllib.error.URLError as error:
            sys.exit(f"cannot reach {self.base} ({error.reason}); start the server with `make run`")
        parsed = json.loads(payload) if payload else None
        if expect is not None and status != expect:
            sys.exit(f"{method} {path}: expected {expect}, got {status}: {json.dumps(parsed)}")
        return status, parsed

    def until(self, what, probe, timeout=30):
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            value = probe()
            if value is not None:
                return value, time.monotonic() - started
            time.sleep(0.1)
        sys.exit(f"timed out after {timeout}s waiting for {what}")


def money(minor, currency="EUR"):
    return f"{minor / 100:.2f} {currency}"


def main():
    port = os.environ.get("PORT", "8080")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("RENTIFY_URL", f"http://127.0.0.1:{port}"))
    args = parser.parse_args()
    api = Api(args.base_url)
    secret = os.environ.get("KYC_WEBHOOK_SECRET", "whsec_dev_kyc").encode()
    run = uuid.uuid4().hex[:8]

    step(f"Rentify at {api.base} is ready")
    status, _ = api.call("GET", "/health/ready")
    if status != 200:
        sys.exit(f"/health/ready answered {status}; is `make run` still starting?")
    note("GET /health/ready -> 200")

    step("Ada (owner) and Grace (renter) sign up")
    users = {}
    for name in ("ada", "grace"):
        _, session = api.call("POST", "/v1/auth/register", body={
            "email": f"{name}.{run}@example.com", "password": PASSWORD, "display_name": name.title(),
        }, expect=201)
        users[name] = (session["user"]["id"], session["access_token"])
        note(f"{name.title()}: {session['user']['id']}")
    (ada_id, ada), (grace_id, grace) = users["ada"], users["grace"]

    step("Ada verifies her identity (the script plays the KYC provider)")
    _, verification = api.call("POST", "/v1/users/me/identity", ada, {
        "document_type": "passport", "document_reference": f"P-{run}",
    }, expect=201)
    event = json.dumps({
        "id": f"evt_{run}", "type": "identity_verification.verified",
        "data": {"verification_id": verification["id"]},
    }).encode()
    stamp = int(time.time())
    mac = hmac.new(secret, f"{stamp}.".encode() + event, hashlib.sha256).hexdigest()
    api.call("POST", "/v1/webhooks/kyc", raw=event,
             headers={"Rentify-Signature": f"t={stamp},v1={mac}"}, expect=200)
    note("signed webhook identity_verification.verified -> 200; identity_status = verified")

    step("Ada lists a Leica M6 and publishes it")
    title = f"Leica M6 rangefinder {run}"
    _, listing = api.call("POST", "/v1/listings", ada, {
        "type": "item", "title": title,
        "description": "A classic film rangefinder with a 35 mm Summicron lens and a strap.",
        "category_id": "0190c000-0000-7000-8000-000000000101",
        "location": {"lat": 48.8566, "lng": 2.3522}, "time_zone": "Europe/Paris",
        "pricing": {"daily": 2500, "weekly": 12000, "deposit": 30000, "currency": "EUR"},
        "quantity": 1, "condition": "like_new", "included_items": ["35 mm lens", "strap"],
        "delivery_options": {"pickup": True, "delivery": False, "delivery_fee": 0},
        "policies": {"cancellation": "moderate", "damage": None, "late_return": None},
        "booking_rules": {"buffer_minutes": 0, "min_notice_minutes": 0},
        "instant_book": False,
    }, expect=201)
    listing_id = listing["id"]
    _, listing = api.call("POST", f"/v1/listings/{listing_id}/publish", ada, expect=200)
    note(f"{listing_id}: {listing['status']}, 25.00 EUR a day")

    start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=10)).replace(
        hour=10, minute=0, second=0, microsecond=0)
    end = start + dt.timedelta(days=2)
    step("Grace searches 'leika rangefinder' within 5 km, free for her dates")
    query = urllib.parse.urlencode({
        "q": f"leika rangefinder {run}", "lat": 48.86, "lng": 2.35, "radius_km": 5,
        "available_from": start.isoformat(), "available_to": end.isoformat(),
    })

    def found():
        _, page = api.call("GET", f"/v1/search?{query}", expect=200)
        return next((h for h in page["data"] if h["listing"]["id"] == listing_id), None)

    hit, waited = api.until("the listing to appear in search", found)
    note(f"found in {waited * 1000:.0f} ms: '{hit['listing']['title']}', "
         f"{hit['distance_km']} km away, score {hit['score']}")

    step("Grace saves a card and books with an Idempotency-Key, then retries")
    api.call("POST", "/v1/payments/methods", grace, {"token": "tok_visa"}, expect=201)
    booking_body = {"listing_id": listing_id, "start_time": start.isoformat(),
                    "end_time": end.isoformat(), "delivery_method": "pickup"}
    key = f"demo-{run}"
    _, booking = api.call("POST", "/v1/bookings", grace, booking_body,
                          headers={"Idempotency-Key": key}, expect=201)
    _, again = api.call("POST", "/v1/bookings", grace, booking_body,
                        headers={"Idempotency-Key": key}, expect=201)
    assert again["id"] == booking["id"], "the retry must return the same booking"
    booking_id = booking["id"]
    note(f"booking {booking_id}: {booking['status']}, total {money(booking['total'])}; "
         "the retry returned the same booking")

    step("The sandbox gateway authorizes the card (signed webhook)")

    def requested():
        _, b = api.call("GET", f"/v1/bookings/{booking_id}", grace, expect=200)
        return b if b["status"] == "requested" else None

    booking, waited = api.until("the authorization", requested)
    note(f"status requested after {waited:.1f} s: waiting for Ada")

    step("Ada approves, hands the camera over, and takes it back")
    for action in ("approve", "start", "complete"):
        _, booking = api.call("POST", f"/v1/bookings/{booking_id}/{action}", ada, expect=200)
        note(f"{action} -> {booking['status']}")

    step("Both review (double blind: each review shows once both exist)")
    for token, rating, comment in ((grace, 5, "Spotless camera, friendly owner."),
                                   (ada, 4, "Returned on time and in good shape.")):
        _, review = api.call("POST", f"/v1/bookings/{booking_id}/reviews", token,
                             {"rating": rating, "comment": comment}, expect=201)
        note(f"{rating}★ by {review['author_role']}: visible={review['visible']}")

    step("Ada's rating and wallet")

    def rated():
        _, user = api.call("GET", f"/v1/users/{ada_id}", grace, expect=200)
        return user if user["rating_summary"]["count"] >= 1 else None

    profile, waited = api.until("the rating to aggregate", rated)
    note(f"rating {profile['rating_summary']['avg']} from {profile['rating_summary']['count']} review(s) "
         f"(aggregated in {waited * 1000:.0f} ms)")

    def paid():
        _, wallet = api.call("GET", "/v1/wallet?currency=EUR", ada, expect=200)
        return wallet if wallet["balance"] > 0 else None

    wallet, _ = api.until("the payout to the wallet", paid)
    note(f"wallet balance {money(wallet['balance'])} (rental less the platform's commission)")

    step("The booking's money, from the double-entry ledger")
    _, transactions = api.call("GET", f"/v1/bookings/{booking_id}/transactions", ada, expect=200)
    for t in transactions["data"]:
        note(f"{t['type']:<16} {money(t['amount'], t['currency']):>12}  {t['status']}")
    print("\nThe journey is complete. API docs: " + api.base + "/docs")


if __name__ == "__main__":
    main()
