#!/usr/bin/env python3
"""Prepares the booking benchmarks against a running server (scripts/bench.sh).

Signs in as the demo owner and renter, creates and publishes a listing with
QUANTITY units (approving it as the demo admin when it goes to review), and
prints shell assignments for bench.sh to `eval`:

    LISTING_ID=... RENTER_TOKEN=... OWNER_TOKEN=...

Standard library only, so the benchmark needs nothing installed.
Usage: booking_setup.py BASE_URL QUANTITY [TITLE]
"""

import json
import sys
import urllib.error
import urllib.request
import uuid

PASSWORD = "rentify-demo-2026"


def call(base, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Idempotency-Key", str(uuid.uuid4()))
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        sys.exit(f"booking_setup: {method} {path} -> {err.code}: {err.read().decode()}")


def login(base, email):
    return call(base, "POST", "/v1/auth/login", body={"email": email, "password": PASSWORD})["access_token"]


def main():
    base, quantity = sys.argv[1], int(sys.argv[2])
    title = sys.argv[3] if len(sys.argv) > 3 else f"Benchmark e-bike fleet ({quantity} units)"
    owner = login(base, "olivia@rentify.test")
    renter = login(base, "ravi@rentify.test")
    categories = call(base, "GET", "/v1/categories")["data"]

    def find(nodes, slug):
        for node in nodes:
            if node["slug"] == slug:
                return node["id"]
            found = find(node.get("children") or [], slug)
            if found:
                return found
        return None

    listing = call(base, "POST", "/v1/listings", owner, {
        "type": "item",
        "title": title,
        "description": "Identical city e-bikes, each booked on its own.",
        "category_id": find(categories, "e-bikes"),
        "location": {"lat": 52.52, "lng": 13.405},
        "time_zone": "Europe/Berlin",
        "pricing": {"hourly": 800, "daily": 3500, "weekly": 18000, "deposit": 20000, "currency": "EUR"},
        "quantity": quantity,
        "condition": "good",
        "included_items": ["helmet", "lock"],
        "instant_book": True,
    })
    published = call(base, "POST", f"/v1/listings/{listing['id']}/publish", owner, {})
    if published["status"] == "pending_review":
        admin = login(base, "admin@rentify.test")
        call(base, "POST", f"/v1/admin/listings/{listing['id']}/approve", admin, {})
    print(f"LISTING_ID={listing['id']} RENTER_TOKEN={renter} OWNER_TOKEN={owner}")


if __name__ == "__main__":
    main()
