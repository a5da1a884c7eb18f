//! A user's notification preferences: which outside channels carry which
//! categories, quiet hours, and the language notifications are written in.
//!
//! No stored row means the defaults: email on for every category, SMS and
//! push off, no quiet hours, English. In-app notifications cannot be turned
//! off: they are the record of what the user was told.

use axum::{Extension, Json};
use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use rentify_platform::{
    ApiError, ApiResult,
    auth::UserCaller,
    error::{ErrorEnvelope, FieldError},
    extract::Json as JsonBody,
};
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    Notifications,
    model::{Category, Channel},
};

/// One channel's switch per category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = NotificationSwitches)]
pub struct Switches {
    pub bookings: bool,
    pub payments: bool,
    pub reviews: bool,
    pub account: bool,
}

impl Switches {
    pub const fn all(on: bool) -> Self {
        Self {
            bookings: on,
            payments: on,
            reviews: on,
            account: on,
        }
    }

    pub fn get(&self, category: Category) -> bool {
        match category {
            Category::Bookings => self.bookings,
            Category::Payments => self.payments,
            Category::Reviews => self.reviews,
            Category::Account => self.account,
        }
    }
}

/// Which categories go through each outside channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = NotificationChannels)]
pub struct Channels {
    pub email: Switches,
    pub sms: Switches,
    pub push: Switches,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            email: Switches::all(true),
            sms: Switches::all(false),
            push: Switches::all(false),
        }
    }
}

impl Channels {
    pub fn enabled(&self, channel: Channel, category: Category) -> bool {
        match channel {
            Channel::Email => self.email.get(category),
            Channel::Sms => self.sms.get(category),
            Channel::Push => self.push.get(category),
        }
    }
}

/// The languages notifications are written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = NotificationLocale)]
pub enum Locale {
    #[default]
    En,
    Fr,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::En, Locale::Fr];

    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
        }
    }

    pub fn parse(value: &str) -> Option<Locale> {
        Locale::ALL.into_iter().find(|l| l.as_str() == value)
    }
}

/// A daily window, in the user's time zone, when only critical
/// notifications leave at once; the others wait for its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub timezone: Tz,
}

impl QuietWindow {
    /// The end of the quiet period `now` falls in, or `None` when `now` is
    /// outside quiet hours. A window may span midnight (`22:00`–`07:00`).
    pub fn ends_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.timezone);
        let time = local.time();
        let today = local.date_naive();
        let end_date = if self.start < self.end {
            (self.start..self.end).contains(&time).then_some(today)?
        } else if time >= self.start {
            today.checked_add_days(Days::new(1))?
        } else if time < self.end {
            today
        } else {
            return None;
        };
        let end = end_date.and_time(self.end);
        let resolved = match self.timezone.from_local_datetime(&end) {
            chrono::LocalResult::Single(at) => at,
            chrono::LocalResult::Ambiguous(first, _) => first,
            // The end falls in a daylight-saving gap: the clock jumps over
            // it, so the first instant after the gap.
            chrono::LocalResult::None => self
                .timezone
                .from_local_datetime(&(end + chrono::Duration::hours(1)))
                .earliest()?,
        };
        Some(resolved.with_timezone(&Utc))
    }
}

/// A user's preferences as the dispatcher uses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub channels: Channels,
    pub quiet_hours: Option<QuietWindow>,
    pub locale: Locale,
}

type SettingsRow = (
    serde_json::Value,
    Option<NaiveTime>,
    Option<NaiveTime>,
    Option<String>,
    String,
);

/// `user_id`'s preferences (the defaults when none were saved).
pub async fn load(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<Settings> {
    let row: Option<SettingsRow> = sqlx::query_as(
        "SELECT channels, quiet_hours_start, quiet_hours_end, quiet_hours_timezone, locale
           FROM notification_preferences WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(settings_of).unwrap_or_default())
}

fn settings_of((channels, start, end, timezone, locale): SettingsRow) -> Settings {
    let quiet_hours = match (start, end, timezone.and_then(|tz| tz.parse::<Tz>().ok())) {
        (Some(start), Some(end), Some(timezone)) => Some(QuietWindow {
            start,
            end,
            timezone,
        }),
        _ => None,
    };
    Settings {
        channels: serde_json::from_value(channels).unwrap_or_default(),
        quiet_hours,
        locale: Locale::parse(&locale).unwrap_or_default(),
    }
}

async fn save(conn: &mut PgConnection, user_id: Uuid, settings: &Settings) -> sqlx::Result<()> {
    let channels = serde_json::to_value(settings.channels).unwrap_or_default();
    let quiet = settings.quiet_hours.as_ref();
    sqlx::query(
        "INSERT INTO notification_preferences
             (user_id, channels, quiet_hours_start, quiet_hours_end, quiet_hours_timezone, locale)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id) DO UPDATE SET
             channels = EXCLUDED.channels, quiet_hours_start = EXCLUDED.quiet_hours_start,
             quiet_hours_end = EXCLUDED.quiet_hours_end,
             quiet_hours_timezone = EXCLUDED.quiet_hours_timezone,
             locale = EXCLUDED.locale, updated_at = now()",
    )
    .bind(user_id)
    .bind(channels)
    .bind(quiet.map(|q| q.start))
    .bind(quiet.map(|q| q.end))
    .bind(quiet.map(|q| q.timezone.name()))
    .bind(settings.locale.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ API

/// Quiet hours as the API shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NotificationQuietHours)]
pub struct QuietHours {
    /// Local time the quiet hours begin, `HH:MM`.
    #[schema(example = "22:00")]
    pub start: String,
    /// Local time they end, `HH:MM` (before `start` spans midnight).
    #[schema(example = "07:00")]
    pub end: String,
    /// IANA time zone the times are in.
    #[schema(example = "Europe/Paris")]
    pub timezone: String,
}

/// The caller's notification preferences.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = NotificationPreferences)]
pub struct Preferences {
    #[schema(example = "notification_preferences")]
    pub object: &'static str,
    /// Which categories each outside channel carries (in-app is always on).
    pub channels: Channels,
    /// `null` when off. Critical notifications ignore them.
    pub quiet_hours: Option<QuietHours>,
    /// The language of notifications: `en` or `fr`.
    pub locale: Locale,
}

impl Preferences {
    fn of(settings: &Settings) -> Self {
        Self {
            object: "notification_preferences",
            channels: settings.channels,
            quiet_hours: settings.quiet_hours.map(|q| QuietHours {
                start: q.start.format("%H:%M").to_string(),
                end: q.end.format("%H:%M").to_string(),
                timezone: q.timezone.name().to_owned(),
            }),
            locale: settings.locale,
        }
    }
}

/// Switches to change; the categories left out keep their value.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NotificationSwitchesUpdate)]
pub struct SwitchesUpdate {
    pub bookings: Option<bool>,
    pub payments: Option<bool>,
    pub reviews: Option<bool>,
    pub account: Option<bool>,
}

impl SwitchesUpdate {
    fn entries(&self) -> [(Category, Option<bool>); 4] {
        [
            (Category::Bookings, self.bookings),
            (Category::Payments, self.payments),
            (Category::Reviews, self.reviews),
            (Category::Account, self.account),
        ]
    }

    fn apply(&self, switches: &mut Switches) {
        for (category, value) in self.entries() {
            if let Some(on) = value {
                match category {
                    Category::Bookings => switches.bookings = on,
                    Category::Payments => switches.payments = on,
                    Category::Reviews => switches.reviews = on,
                    Category::Account => switches.account = on,
                }
            }
        }
    }
}

/// Channels to change; the channels left out keep their switches.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NotificationChannelsUpdate)]
pub struct ChannelsUpdate {
    pub email: Option<SwitchesUpdate>,
    pub sms: Option<SwitchesUpdate>,
    pub push: Option<SwitchesUpdate>,
    /// Accepted so that a client may send back what it read, but only
    /// `true`: in-app notifications cannot be turned off.
    pub in_app: Option<SwitchesUpdate>,
}

/// `PUT /v1/notifications/preferences`: every field is optional and what is
/// left out keeps its current value, so a client may send only what changes
/// or the whole object it read (`object` included).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateNotificationPreferences)]
pub struct UpdatePreferences {
    /// Ignored (`notification_preferences`).
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub channels: Option<ChannelsUpdate>,
    /// `null` turns quiet hours off.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<QuietHours>)]
    pub quiet_hours: Option<Option<QuietHours>>,
    #[serde(default)]
    pub locale: Option<String>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

fn field(field: &str, code: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

fn parse_time(value: &str) -> Option<NaiveTime> {
    // Exactly `HH:MM`: chrono alone would accept `7:5`.
    (value.len() == 5)
        .then(|| NaiveTime::parse_from_str(value, "%H:%M").ok())
        .flatten()
}

impl UpdatePreferences {
    /// `current` with this update applied, or every invalid field.
    pub fn apply(&self, current: &Settings) -> Result<Settings, ApiError> {
        let mut errors = Vec::new();
        let mut next = *current;
        if let Some(channels) = &self.channels {
            if let Some(in_app) = &channels.in_app {
                for (category, value) in in_app.entries() {
                    if value == Some(false) {
                        errors.push(field(
                            &format!("channels.in_app.{}", category.as_str()),
                            "not_allowed",
                            "in-app notifications cannot be turned off",
                        ));
                    }
                }
            }
            for (update, switches) in [
                (&channels.email, &mut next.channels.email),
                (&channels.sms, &mut next.channels.sms),
                (&channels.push, &mut next.channels.push),
            ] {
                if let Some(update) = update {
                    update.apply(switches);
                }
            }
        }
        match &self.quiet_hours {
            None => {}
            Some(None) => next.quiet_hours = None,
            Some(Some(q)) => {
                let start = parse_time(&q.start);
                let end = parse_time(&q.end);
                let timezone = q.timezone.parse::<Tz>().ok();
                if start.is_none() {
                    errors.push(field(
                        "quiet_hours.start",
                        "invalid_format",
                        "a local time as HH:MM (00:00 to 23:59)",
                    ));
                }
                if end.is_none() {
                    errors.push(field(
                        "quiet_hours.end",
                        "invalid_format",
                        "a local time as HH:MM (00:00 to 23:59)",
                    ));
                }
                if timezone.is_none() {
                    errors.push(field(
                        "quiet_hours.timezone",
                        "invalid_choice",
                        "an IANA time zone such as Europe/Paris",
                    ));
                }
                if let (Some(start), Some(end)) = (start, end)
                    && start == end
                {
                    errors.push(field(
                        "quiet_hours.end",
                        "invalid_range",
                        "must differ from `start` (send null to turn quiet hours off)",
                    ));
                }
                if let (Some(start), Some(end), Some(timezone)) = (start, end, timezone) {
                    next.quiet_hours = Some(QuietWindow {
                        start,
                        end,
                        timezone,
                    });
                }
            }
        }
        if let Some(locale) = &self.locale {
            match Locale::parse(locale) {
                Some(locale) => next.locale = locale,
                None => errors.push(field("locale", "invalid_choice", "one of `en`, `fr`")),
            }
        }
        if errors.is_empty() {
            Ok(next)
        } else {
            errors.sort_by(|a, b| a.field.cmp(&b.field));
            Err(ApiError::validation(errors))
        }
    }
}

/// The caller's notification preferences (the defaults until changed).
#[utoipa::path(
    get, path = "/v1/notifications/preferences", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The preferences", body = Preferences),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: an API key", body = ErrorEnvelope),
    )
)]
pub async fn get_preferences(
    Extension(notifications): Extension<Notifications>,
    caller: UserCaller,
) -> ApiResult<Json<Preferences>> {
    let mut conn = notifications.db().acquire().await?;
    let settings = load(&mut conn, caller.user_id).await?;
    Ok(Json(Preferences::of(&settings)))
}

/// Changes the caller's preferences: channels per category, quiet hours
/// and language. Fields left out keep their value; in-app cannot be turned off.
#[utoipa::path(
    put, path = "/v1/notifications/preferences", tag = "notifications",
    security(("bearer" = [])),
    request_body = UpdatePreferences,
    responses(
        (status = 200, description = "The preferences after the change", body = Preferences),
        (status = 400, description = "`validation_failed`, naming each invalid field", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: an API key", body = ErrorEnvelope),
    )
)]
pub async fn put_preferences(
    Extension(notifications): Extension<Notifications>,
    caller: UserCaller,
    JsonBody(update): JsonBody<UpdatePreferences>,
) -> ApiResult<Json<Preferences>> {
    let mut tx = notifications.db().begin().await?;
    // Two concurrent updates of different fields must both land: take the
    // row (created with the defaults if need be) before merging.
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, channels) VALUES ($1, $2)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(caller.user_id)
    .bind(serde_json::to_value(Channels::default()).map_err(anyhow::Error::from)?)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT 1 FROM notification_preferences WHERE user_id = $1 FOR UPDATE")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    let current = load(&mut tx, caller.user_id).await?;
    let next = update.apply(&current)?;
    save(&mut tx, caller.user_id, &next).await?;
    tx.commit().await?;
    Ok(Json(Preferences::of(&next)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(start: &str, end: &str, tz: &str) -> QuietWindow {
        QuietWindow {
            start: parse_time(start).unwrap(),
            end: parse_time(end).unwrap(),
            timezone: tz.parse().unwrap(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_window_over_midnight_ends_the_next_morning() {
        let w = window("22:00", "07:00", "Europe/Paris");
        // 23:30 in Paris (UTC+1 in January) → 07:00 the next day.
        assert_eq!(
            w.ends_after(at("2026-01-10T22:30:00Z")),
            Some(at("2026-01-11T06:00:00Z"))
        );
        // 05:00 in Paris → 07:00 the same day.
        assert_eq!(
            w.ends_after(at("2026-01-11T04:00:00Z")),
            Some(at("2026-01-11T06:00:00Z"))
        );
        // Noon: not quiet.
        assert_eq!(w.ends_after(at("2026-01-11T11:00:00Z")), None);
        // The end itself is no longer quiet.
        assert_eq!(w.ends_after(at("2026-01-11T06:00:00Z")), None);
    }

    #[test]
    fn a_window_within_a_day_and_daylight_saving() {
        let w = window("13:00", "15:00", "UTC");
        assert_eq!(
            w.ends_after(at("2026-03-01T14:00:00Z")),
            Some(at("2026-03-01T15:00:00Z"))
        );
        assert_eq!(w.ends_after(at("2026-03-01T15:00:00Z")), None);
        // Paris skips 02:00–03:00 on 2026-03-29: an end at 02:30 is the
        // first instant after the gap.
        let w = window("01:00", "02:30", "Europe/Paris");
        assert_eq!(
            w.ends_after(at("2026-03-29T00:30:00Z")),
            Some(at("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn updates_merge_and_name_each_invalid_field() {
        let update: UpdatePreferences = serde_json::from_value(serde_json::json!({
            "channels": {"sms": {"bookings": true}, "email": {"reviews": false}},
            "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"},
            "locale": "fr"
        }))
        .unwrap();
        let next = update.apply(&Settings::default()).unwrap();
        assert!(next.channels.sms.bookings && !next.channels.sms.payments);
        assert!(!next.channels.email.reviews && next.channels.email.bookings);
        assert_eq!(next.locale, Locale::Fr);
        assert!(next.quiet_hours.is_some());
        let off: UpdatePreferences =
            serde_json::from_value(serde_json::json!({"quiet_hours": null})).unwrap();
        assert_eq!(off.apply(&next).unwrap().quiet_hours, None);
        let kept: UpdatePreferences = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(kept.apply(&next).unwrap(), next);

        let bad: UpdatePreferences = serde_json::from_value(serde_json::json!({
            "channels": {"in_app": {"bookings": false}},
            "quiet_hours": {"start": "25:00", "end": "7:00", "timezone": "Mars/Olympus"},
            "locale": "de"
        }))
        .unwrap();
        let error = bad.apply(&Settings::default()).unwrap_err();
        let body = error.envelope_json();
        let fields: Vec<&str> = body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "channels.in_app.bookings",
                "locale",
                "quiet_hours.end",
                "quiet_hours.start",
                "quiet_hours.timezone"
            ]
        );
    }

    proptest! {
        #[test]
        fn the_end_is_after_now_within_a_day_and_outside_the_window(
            start in 0u32..1440, end in 0u32..1440, minute in 0i64..(60 * 24 * 14),
        ) {
            prop_assume!(start != end);
            let w = QuietWindow {
                start: NaiveTime::from_hms_opt(start / 60, start % 60, 0).unwrap(),
                end: NaiveTime::from_hms_opt(end / 60, end % 60, 0).unwrap(),
                timezone: Tz::UTC,
            };
            let now = at("2026-01-01T00:00:00Z") + chrono::Duration::minutes(minute);
            if let Some(until) = w.ends_after(now) {
                prop_assert!(until > now);
                prop_assert!(until - now <= chrono::Duration::hours(24));
                prop_assert_eq!(w.ends_after(until), None);
            }
        }
    }
}
