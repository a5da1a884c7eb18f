-- Support cases: a disputed booking opens one (the bookings module's
-- `support_cases` consumer of `booking.disputed`), for an admin to work.
CREATE TABLE support_cases (
    id          uuid        PRIMARY KEY,
    booking_id  uuid        NOT NULL REFERENCES bookings (id),
    -- The event that opened it: one case per dispute, however often the
    -- event is delivered.
    event_id    uuid        NOT NULL UNIQUE,
    kind        text        NOT NULL CHECK (kind IN ('dispute')),
    status      text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opened_by   uuid,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz
);
CREATE INDEX support_cases_booking_idx ON support_cases (booking_id);
CREATE INDEX support_cases_open_idx ON support_cases (created_at DESC, id DESC) WHERE status = 'open';
