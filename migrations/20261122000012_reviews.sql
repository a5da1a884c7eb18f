-- Reviews and trust (crates/reviews).
--
-- A review is one party's word about the other after a completed booking:
-- the renter about the owner, the owner about the renter. Reviews are
-- double-blind: `visible_at` stays NULL (the review is sealed, seen only by
-- its author) until both parties have reviewed the booking or the review
-- window closes, so nobody writes theirs knowing the other's. A review is
-- public when it is `published` (moderation passed) and unsealed; only
-- those count in `users.rating_summary` (kept by the `review_ratings`
-- consumer) and in the trust score.

CREATE TABLE reviews (
    id               uuid        PRIMARY KEY,
    booking_id       uuid        NOT NULL REFERENCES bookings (id),
    -- Denormalized from the booking: listing pages and the search index
    -- look reviews up by listing.
    listing_id       uuid        NOT NULL REFERENCES listings (id),
    author_id        uuid        NOT NULL REFERENCES users (id),
    -- The other party of the booking: whom the review is about.
    target_id        uuid        NOT NULL REFERENCES users (id),
    author_role      text        NOT NULL CHECK (author_role IN ('renter', 'owner')),
    rating           smallint    NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment          text        CHECK (char_length(comment) <= 2000),
    -- `pending`: held by the moderation checks until an admin decides.
    status           text        NOT NULL CHECK (status IN ('pending', 'published', 'rejected')),
    -- What the checks found (`link`, `profanity`, …); empty when clean.
    moderation_flags text[]      NOT NULL DEFAULT '{}',
    rejection_reason text,
    moderated_by     uuid        REFERENCES users (id),
    moderated_at     timestamptz,
    -- When the blind lifted (both reviewed, or the window closed).
    visible_at       timestamptz,
    -- The author may edit until then (48 h), and only while still sealed.
    editable_until   timestamptz NOT NULL,
    -- The booking's review window: completion + REVIEWS_WINDOW_SECS. The
    -- same for both reviews of a booking; the `reviews.reveal` job unseals
    -- a lone review then.
    window_closes_at timestamptz NOT NULL,
    -- Bumped by every change; the `ETag`.
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reviews_one_per_author UNIQUE (booking_id, author_id),
    CHECK (author_id <> target_id),
    CHECK ((status = 'rejected') = (rejection_reason IS NOT NULL))
);
-- A user's public reviews, newest first, and their rating aggregate.
CREATE INDEX reviews_target_public_idx ON reviews (target_id, id DESC)
    WHERE status = 'published' AND visible_at IS NOT NULL;
CREATE INDEX reviews_listing_idx ON reviews (listing_id, id DESC);
-- The moderation queue (and the other statuses), oldest first.
CREATE INDEX reviews_status_idx ON reviews (status, id);

-- The booking facts the trust score needs, projected from `booking.*`
-- events by the `trust` consumer (the bookings module's tables stay its
-- own). Every fact is set once and never cleared, so events applied in any
-- order, or twice, give the same row. No foreign keys: a projection takes
-- the stream as it comes. Extensions (child bookings) are not counted.
CREATE TABLE trust_bookings (
    booking_id   uuid        PRIMARY KEY,
    renter_id    uuid        NOT NULL,
    owner_id     uuid        NOT NULL,
    -- Reached `requested` or `approved`: a real booking, not a failed
    -- payment. Only these count towards the rates.
    engaged      boolean     NOT NULL DEFAULT false,
    -- `booking.requested`: the owner's clock starts.
    requested_at timestamptz,
    -- The owner's answer (approve/decline), or the approval timeout.
    answered_at  timestamptz,
    -- The party who cancelled (NULL for admins and the system).
    cancelled_by uuid,
    disputed_at  timestamptz,
    completed_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trust_bookings_renter_idx ON trust_bookings (renter_id);
CREATE INDEX trust_bookings_owner_idx ON trust_bookings (owner_id, requested_at DESC);

-- Each user's trust score (0–100) and how it was made up, recomputed by the
-- `trust` consumer when one of its signals changes.
CREATE TABLE trust_scores (
    user_id     uuid        PRIMARY KEY REFERENCES users (id),
    score       smallint    NOT NULL CHECK (score BETWEEN 0 AND 100),
    components  jsonb       NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now()
);
