-- Identity and access: accounts, roles, sessions, signing keys, API keys,
-- verification, MFA, KYC, external sign-in and the audit log.
--
-- Personal data that is not needed for lookups (phone, KYC references, MFA
-- secrets, private signing keys) is stored as AES-256-GCM ciphertext written
-- by the application: `<key version byte><12-byte nonce><ciphertext+tag>`.
-- A raw SELECT never shows it. Phone lookups go through a keyed blind index.

CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    -- Lower-cased; NULL once the account is erased.
    email               text,
    email_verified_at   timestamptz,
    -- Argon2id PHC string; NULL for accounts that only sign in through OIDC.
    password_hash       text,
    display_name        text NOT NULL,
    avatar_url          text,
    phone_ciphertext    bytea,
    phone_blind_index   bytea,
    phone_verified_at   timestamptz,
    identity_status     text NOT NULL DEFAULT 'unverified'
        CHECK (identity_status IN ('unverified', 'pending', 'verified', 'rejected')),
    location            geography(Point, 4326),
    preferences         jsonb NOT NULL DEFAULT '{}',
    rating_summary      jsonb NOT NULL DEFAULT '{"avg": null, "count": 0}',
    response_time_avg   interval,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'erased')),
    -- Lockout: failures counted in a window; escalating lock levels.
    failed_logins       integer NOT NULL DEFAULT 0,
    failed_window_start timestamptz,
    locked_until        timestamptz,
    lockout_level       integer NOT NULL DEFAULT 0,
    mfa_enabled         boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    erased_at           timestamptz
);
CREATE UNIQUE INDEX users_email_key ON users (email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX users_phone_key ON users (phone_blind_index) WHERE phone_blind_index IS NOT NULL;

CREATE TABLE user_roles (
    user_id    uuid NOT NULL REFERENCES users (id),
    role       text NOT NULL CHECK (role IN ('renter', 'owner', 'admin')),
    granted_by uuid REFERENCES users (id),
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role)
);

-- Refresh tokens: opaque 256-bit secrets, stored as SHA-256. A family is one
-- sign-in; each rotation adds a member and marks its parent rotated.
CREATE TABLE refresh_tokens (
    id             uuid PRIMARY KEY,
    family_id      uuid NOT NULL,
    user_id        uuid NOT NULL REFERENCES users (id),
    token_hash     bytea NOT NULL UNIQUE,
    parent_id      uuid REFERENCES refresh_tokens (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    rotated_at     timestamptz,
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Access-token signing keys (Ed25519). The private key is encrypted with
-- the PII key; public keys are served at /.well-known/jwks.json.
CREATE TABLE signing_keys (
    kid                    text PRIMARY KEY,
    algorithm              text NOT NULL CHECK (algorithm = 'EdDSA'),
    private_key_ciphertext bytea NOT NULL,
    public_key             bytea NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    retired_at             timestamptz
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    -- The first characters of the secret, to recognise a key in lists.
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL,
    created_by   uuid NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE TABLE email_verifications (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id),
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_verifications_user ON email_verifications (user_id);

-- One outstanding phone code per user; a new request replaces it.
CREATE TABLE phone_verifications (
    user_id           uuid PRIMARY KEY REFERENCES users (id),
    phone_ciphertext  bytea NOT NULL,
    phone_blind_index bytea NOT NULL,
    code_hash         bytea NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL
);

CREATE TABLE mfa_factors (
    user_id           uuid PRIMARY KEY REFERENCES users (id),
    secret_ciphertext bytea NOT NULL,
    confirmed_at      timestamptz,
    -- Last accepted TOTP time step: a code is never accepted twice.
    last_used_step    bigint,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mfa_recovery_codes (
    user_id   uuid NOT NULL REFERENCES users (id),
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- The short-lived challenge a password login returns when MFA is on.
CREATE TABLE mfa_challenges (
    id         uuid PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    user_id    uuid NOT NULL REFERENCES users (id),
    attempts   integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE TABLE identity_verifications (
    id                           uuid PRIMARY KEY,
    user_id                      uuid NOT NULL REFERENCES users (id),
    document_type                text NOT NULL,
    document_reference_ciphertext bytea NOT NULL,
    status                       text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'verified', 'rejected')),
    reason                       text,
    submitted_at                 timestamptz NOT NULL DEFAULT now(),
    decided_at                   timestamptz
);
CREATE INDEX identity_verifications_user ON identity_verifications (user_id);

-- Webhook event ids already processed: a replay is acknowledged, not re-applied.
CREATE TABLE kyc_webhook_events (
    event_id    text PRIMARY KEY,
    event_type  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- OpenID Connect sign-ins in flight (state, PKCE verifier, nonce).
CREATE TABLE oidc_logins (
    state         text PRIMARY KEY,
    code_verifier text NOT NULL,
    nonce         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);

-- External accounts linked to a Rentify user.
CREATE TABLE user_identities (
    issuer     text NOT NULL,
    subject    text NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id),
    email      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- Messages handed to the development transport (email, SMS) until the
-- notifications module owns delivery: tests and `make run` read them here.
CREATE TABLE dev_deliveries (
    id         uuid PRIMARY KEY,
    channel    text NOT NULL CHECK (channel IN ('email', 'sms', 'push')),
    user_id    uuid REFERENCES users (id),
    recipient  text NOT NULL,
    subject    text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dev_deliveries_user ON dev_deliveries (user_id, created_at);

-- Append-only record of sensitive reads and every mutation of identity data.
CREATE TABLE audit_log (
    id           uuid PRIMARY KEY,
    position     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    actor_kind   text NOT NULL CHECK (actor_kind IN ('user', 'api_key', 'operator', 'provider', 'system', 'anonymous')),
    actor_id     uuid,
    action       text NOT NULL,
    subject_type text NOT NULL,
    subject_id   text,
    request_id   text,
    metadata     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_subject ON audit_log (subject_type, subject_id);
CREATE INDEX audit_log_actor ON audit_log (actor_id);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
