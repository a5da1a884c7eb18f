-- Notifications (crates/notifications): what a user is told, through which
-- channels, and what became of each attempt to tell them.
--
-- No foreign key to `users`: the identity module owns that table and may
-- erase an account; the notifications consumer deletes the user's rows on
-- `user.erased` instead. No foreign key to `events` either: the outbox is
-- purged by retention long before notifications are.

-- One row per thing a user is told: always shown in the app (the in-app
-- channel cannot be turned off), and the source of every other delivery.
CREATE TABLE notifications (
    id          uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL,
    -- The event type that caused it (`booking.approved`), or `review_prompt`.
    type        text        NOT NULL,
    category    text        NOT NULL CHECK (category IN ('bookings', 'payments', 'reviews', 'account')),
    title       text        NOT NULL,
    body        text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The outbox event it answers (for a review prompt, the completion).
    event_id    uuid        NOT NULL,
    -- Critical notifications (payment failed, booking cancelled) ignore quiet hours.
    critical    boolean     NOT NULL DEFAULT false,
    locale      text        NOT NULL DEFAULT 'en',
    read_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- A redelivered event (at-least-once) creates nothing twice.
    CONSTRAINT notifications_once UNIQUE (event_id, user_id, type)
);
-- The caller's list, newest first, all or unread only.
CREATE INDEX notifications_user_recent_idx ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_user_unread_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE read_at IS NULL;
-- Retention: read notifications past their time.
CREATE INDEX notifications_read_idx ON notifications (created_at) WHERE read_at IS NOT NULL;

-- A user's choices; no row means the defaults (email on for every category,
-- SMS and push off, no quiet hours, English).
CREATE TABLE notification_preferences (
    user_id               uuid        PRIMARY KEY,
    -- {"email": {"bookings": true, ...}, "sms": {...}, "push": {...}}
    channels              jsonb       NOT NULL,
    quiet_hours_start     time,
    quiet_hours_end       time,
    quiet_hours_timezone  text,
    locale                text        NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'fr')),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_preferences_quiet_hours_whole CHECK (
        (quiet_hours_start IS NULL) = (quiet_hours_end IS NULL)
        AND (quiet_hours_start IS NULL) = (quiet_hours_timezone IS NULL)
    )
);

-- One row per notification and outside channel: the delivery's tracking.
--   queued     waiting for its (next) attempt, not before `deliver_after`;
--   sent       accepted by the provider (an SMTP server's 250): on its way,
--              delivery not confirmed;
--   delivered  the provider confirmed delivery (the development transports
--              confirm at once);
--   failed     NOTIFICATIONS_MAX_ATTEMPTS attempts failed, or one failed for
--              good (a permanent SMTP error, no address any more).
CREATE TABLE notification_deliveries (
    id                   uuid        PRIMARY KEY,
    notification_id      uuid        NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel              text        NOT NULL CHECK (channel IN ('email', 'sms', 'push')),
    -- The address used: an email, a masked phone number, or `user:<id>` for push.
    recipient            text        NOT NULL,
    status               text        NOT NULL DEFAULT 'queued'
                                     CHECK (status IN ('queued', 'sent', 'delivered', 'failed')),
    attempts             integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error           text,
    provider_message_id  text,
    -- What is sent, rendered when the notification was made (the user's locale then).
    subject              text        NOT NULL,
    body_text            text        NOT NULL,
    body_html            text,
    -- Not before then: the end of the recipient's quiet hours, or a retry's back-off.
    deliver_after        timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_deliveries_one_per_channel UNIQUE (notification_id, channel)
);
-- Retention: finished deliveries past their time.
CREATE INDEX notification_deliveries_finished_idx ON notification_deliveries (updated_at)
    WHERE status <> 'queued';

-- What the development transports "sent" (email without SMTP_URL, SMS and
-- push until real providers are wired): one record per delivery, so a retry
-- or a redelivered job records nothing twice.
CREATE TABLE notification_dev_messages (
    id           uuid        PRIMARY KEY,
    delivery_id  uuid        NOT NULL UNIQUE REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    channel      text        NOT NULL CHECK (channel IN ('email', 'sms', 'push')),
    recipient    text        NOT NULL,
    subject      text,
    body_text    text        NOT NULL,
    body_html    text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
