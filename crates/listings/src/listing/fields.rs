//! The editable fields of a listing: what a create or PATCH body may carry
//! ([`ListingInput`]), the listing's content after applying it
//! ([`ListingData`]), and the pure rules over that content — field
//! validation (every save) and completeness (publishing).

use rentify_platform::patch::double_option;
use std::collections::HashSet;

use rentify_identity::users::Location;
use rentify_platform::error::FieldError;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::model::{
    BookingRules, Condition, DeliveryOptions, ListingType, Policies, Pricing, PropertyDetails,
    ServicePackage,
};

/// Largest amount (minor units) a price, deposit or fee may have: enough for
/// any rental, small enough that sums of them never overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
pub const MAX_QUANTITY: i64 = 1000;
const MAX_TITLE: usize = 140;
const MAX_DESCRIPTION: usize = 10_000;
const MAX_TEXT: usize = 2_000;
const MAX_LIST: usize = 50;
const MAX_PACKAGES: usize = 20;

/// A listing's fields in a create (`POST /v1/listings`) or update (`PATCH`)
/// body. Absent fields are left as they are; `null` clears an optional field
/// and resets one with a default (`quantity`, `time_zone`, `delivery_options`,
/// `policies`, `booking_rules`, `instant_book`, lists) to that default.
/// Drafts may be incomplete: completeness is checked when publishing.
/// `media` is read-only here (see the media upload routes).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingInput {
    /// Required when creating; cannot change afterwards.
    #[serde(default, rename = "type")]
    pub kind: Option<ListingType>,
    /// 1 to 140 characters.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub title: Option<Option<String>>,
    /// Up to 10,000 characters.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// A category (`GET /v1/categories`) whose `kind` is the listing's type.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub category_id: Option<Option<Uuid>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Location>)]
    pub location: Option<Option<Location>>,
    /// IANA time zone (`Europe/Paris`); default `UTC`. Days, notice and
    /// availability are reckoned in it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>, example = "Europe/Paris")]
    pub time_zone: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Pricing>)]
    pub pricing: Option<Option<Pricing>>,
    /// Units of identical inventory, 1 to 1000 (default 1).
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub quantity: Option<Option<i64>>,
    /// Items only.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Condition>)]
    pub condition: Option<Option<Condition>>,
    /// Items only: accessories, cables, ….
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub included_items: Option<Option<Vec<String>>>,
    /// Services only: what is covered.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub service_scope: Option<Option<String>>,
    /// Services only; names unique within the listing.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Vec<ServicePackage>>)]
    pub service_packages: Option<Option<Vec<ServicePackage>>>,
    /// Properties only.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<PropertyDetails>)]
    pub property: Option<Option<PropertyDetails>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<DeliveryOptions>)]
    pub delivery_options: Option<Option<DeliveryOptions>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Policies>)]
    pub policies: Option<Option<Policies>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<BookingRules>)]
    pub booking_rules: Option<Option<BookingRules>>,
    /// Bookings are approved without the owner when `true`.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<bool>)]
    pub instant_book: Option<Option<bool>>,
}

/// What a listing says about itself: every editable field, defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ListingData {
    pub kind: ListingType,
    pub title: Option<String>,
    pub description: Option<String>,
    pub category_id: Option<Uuid>,
    pub location: Option<Location>,
    pub time_zone: String,
    pub pricing: Option<Pricing>,
    pub quantity: i64,
    pub condition: Option<Condition>,
    pub included_items: Vec<String>,
    pub service_scope: Option<String>,
    pub service_packages: Vec<ServicePackage>,
    pub property: Option<PropertyDetails>,
    pub delivery_options: DeliveryOptions,
    pub policies: Policies,
    pub booking_rules: BookingRules,
    pub instant_book: bool,
}

impl ListingData {
    /// A new, empty listing of `kind`.
    pub fn new(kind: ListingType) -> Self {
        Self {
            kind,
            title: None,
            description: None,
            category_id: None,
            location: None,
            time_zone: "UTC".into(),
            pricing: None,
            quantity: 1,
            condition: None,
            included_items: Vec::new(),
            service_scope: None,
            service_packages: Vec::new(),
            property: None,
            delivery_options: DeliveryOptions::default(),
            policies: Policies::default(),
            booking_rules: BookingRules::default(),
            instant_book: false,
        }
    }

    /// Applies `input` and returns the names of the fields it set (whether
    /// or not their value changed). `input.kind` is not applied: the type of
    /// a listing is fixed when it is created.
    pub fn apply(&mut self, input: ListingInput) -> Vec<&'static str> {
        let mut set = Vec::new();
        macro_rules! take {
            ($field:ident, $apply:expr) => {
                if let Some(value) = input.$field {
                    #[allow(clippy::redundant_closure_call)]
                    {
                        self.$field = $apply(value);
                    }
                    set.push(stringify!($field));
                }
            };
        }
        let trimmed = |v: Option<String>| v.map(|s| s.trim().to_string());
        take!(title, trimmed);
        take!(description, trimmed);
        take!(category_id, |v| v);
        take!(location, |v| v);
        take!(time_zone, |v: Option<String>| v
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "UTC".into()));
        take!(pricing, |v| v);
        take!(quantity, |v: Option<i64>| v.unwrap_or(1));
        take!(condition, |v| v);
        take!(included_items, |v: Option<Vec<String>>| v
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .collect());
        take!(service_scope, trimmed);
        take!(service_packages, |v: Option<Vec<ServicePackage>>| v
            .unwrap_or_default()
            .into_iter()
            .map(|mut p| {
                p.name = p.name.trim().to_string();
                p
            })
            .collect());
        take!(property, |v| v);
        take!(delivery_options, |v: Option<DeliveryOptions>| v
            .unwrap_or_default());
        take!(policies, |v: Option<Policies>| v.unwrap_or_default());
        take!(booking_rules, |v: Option<BookingRules>| v
            .unwrap_or_default());
        take!(instant_book, |v: Option<bool>| v.unwrap_or(false));
        set
    }

    /// Every rule a saved listing (draft or not) must satisfy; one error per
    /// offending field. The category's kind needs the database and is
    /// checked by the caller.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, code: &str, message: &str| {
            errors.push(FieldError {
                field: field.into(),
                code: code.into(),
                message: message.into(),
            })
        };
        let chars = |s: &str| s.chars().count();

        if let Some(title) = &self.title
            && !(1..=MAX_TITLE).contains(&chars(title))
        {
            fail("title", "length", "must be 1 to 140 characters");
        }
        if let Some(description) = &self.description
            && !(1..=MAX_DESCRIPTION).contains(&chars(description))
        {
            fail("description", "length", "must be 1 to 10000 characters");
        }
        if let Some(location) = &self.location
            && let Err(errors) = location.validate()
        {
            let mut invalid: Vec<_> = errors.field_errors().into_keys().collect();
            invalid.sort();
            for field in invalid {
                let message = if field == "lat" {
                    "must be between -90 and 90"
                } else {
                    "must be between -180 and 180"
                };
                fail(&format!("location.{field}"), "range", message);
            }
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            fail(
                "time_zone",
                "time_zone",
                "must be an IANA time zone such as `Europe/Paris`",
            );
        }
        if let Some(pricing) = &self.pricing {
            for (field, value) in [
                ("pricing.hourly", pricing.hourly),
                ("pricing.daily", pricing.daily),
                ("pricing.weekly", pricing.weekly),
                ("pricing.deposit", Some(pricing.deposit)),
            ] {
                if value.is_some_and(|v| !(0..=MAX_AMOUNT).contains(&v)) {
                    fail(
                        field,
                        "range",
                        "must be a non-negative amount in minor units",
                    );
                }
            }
        }
        if !(1..=MAX_QUANTITY).contains(&self.quantity) {
            fail("quantity", "range", "must be between 1 and 1000");
        }

        let wrong_type = |kind: ListingType| {
            format!("only listings of type `{}` have this field", kind.as_str())
        };
        if self.kind != ListingType::Item {
            if self.condition.is_some() {
                fail(
                    "condition",
                    "not_allowed_for_type",
                    &wrong_type(ListingType::Item),
                );
            }
            if !self.included_items.is_empty() {
                fail(
                    "included_items",
                    "not_allowed_for_type",
                    &wrong_type(ListingType::Item),
                );
            }
        }
        if self.kind != ListingType::Service {
            if self.service_scope.is_some() {
                fail(
                    "service_scope",
                    "not_allowed_for_type",
                    &wrong_type(ListingType::Service),
                );
            }
            if !self.service_packages.is_empty() {
                fail(
                    "service_packages",
                    "not_allowed_for_type",
                    &wrong_type(ListingType::Service),
                );
            }
        }
        if self.kind != ListingType::Property && self.property.is_some() {
            fail(
                "property",
                "not_allowed_for_type",
                &wrong_type(ListingType::Property),
            );
        }

        if self.included_items.len() > MAX_LIST {
            fail("included_items", "length", "at most 50 entries");
        }
        for (i, item) in self.included_items.iter().enumerate() {
            if !(1..=100).contains(&chars(item)) {
                fail(
                    &format!("included_items[{i}]"),
                    "length",
                    "must be 1 to 100 characters",
                );
            }
        }
        if let Some(scope) = &self.service_scope
            && !(1..=MAX_TEXT).contains(&chars(scope))
        {
            fail("service_scope", "length", "must be 1 to 2000 characters");
        }
        if self.service_packages.len() > MAX_PACKAGES {
            fail("service_packages", "length", "at most 20 packages");
        }
        let mut names = HashSet::new();
        for (i, package) in self.service_packages.iter().enumerate() {
            if !(1..=80).contains(&chars(&package.name)) {
                fail(
                    &format!("service_packages[{i}].name"),
                    "length",
                    "must be 1 to 80 characters",
                );
            } else if !names.insert(package.name.to_lowercase()) {
                fail(
                    &format!("service_packages[{i}].name"),
                    "duplicate",
                    "package names must be unique",
                );
            }
            if !(0..=MAX_AMOUNT).contains(&package.price) {
                fail(
                    &format!("service_packages[{i}].price"),
                    "range",
                    "must be a non-negative amount in minor units",
                );
            }
            if package
                .description
                .as_deref()
                .is_some_and(|d| chars(d) > MAX_TEXT)
            {
                fail(
                    &format!("service_packages[{i}].description"),
                    "length",
                    "at most 2000 characters",
                );
            }
        }
        if let Some(property) = &self.property {
            if property.amenities.len() > MAX_LIST {
                fail("property.amenities", "length", "at most 50 entries");
            }
            if property
                .amenities
                .iter()
                .any(|a| !(1..=60).contains(&chars(a.trim())))
            {
                fail(
                    "property.amenities",
                    "length",
                    "each amenity must be 1 to 60 characters",
                );
            }
        }

        let delivery = &self.delivery_options;
        if !(0..=MAX_AMOUNT).contains(&delivery.delivery_fee) {
            fail(
                "delivery_options.delivery_fee",
                "range",
                "must be a non-negative amount in minor units",
            );
        }
        if self.kind == ListingType::Item && !delivery.pickup && !delivery.delivery {
            fail(
                "delivery_options",
                "none_selected",
                "an item needs pickup, delivery or both",
            );
        }
        for (field, text) in [
            ("policies.damage", &self.policies.damage),
            ("policies.late_return", &self.policies.late_return),
        ] {
            if text.as_deref().is_some_and(|t| chars(t) > MAX_TEXT) {
                fail(field, "length", "at most 2000 characters");
            }
        }

        let rules = &self.booking_rules;
        if rules.buffer_minutes > 7 * 24 * 60 {
            fail(
                "booking_rules.buffer_minutes",
                "range",
                "must be at most 10080 (a week)",
            );
        }
        if rules.min_notice_minutes > 365 * 24 * 60 {
            fail(
                "booking_rules.min_notice_minutes",
                "range",
                "must be at most 525600 (a year)",
            );
        }
        if rules
            .max_advance_days
            .is_some_and(|d| !(1..=730).contains(&d))
        {
            fail(
                "booking_rules.max_advance_days",
                "range",
                "must be between 1 and 730",
            );
        }
        for (field, value) in [
            (
                "booking_rules.min_duration_minutes",
                rules.min_duration_minutes,
            ),
            (
                "booking_rules.max_duration_minutes",
                rules.max_duration_minutes,
            ),
        ] {
            if value.is_some_and(|v| !(1..=366 * 24 * 60).contains(&v)) {
                fail(field, "range", "must be between 1 and 527040 (366 days)");
            }
        }
        if let (Some(min), Some(max)) = (rules.min_duration_minutes, rules.max_duration_minutes)
            && min > max
        {
            fail(
                "booking_rules.min_duration_minutes",
                "min_exceeds_max",
                "must not exceed `max_duration_minutes`",
            );
        }
        errors
    }

    /// What is still missing before the listing can be published; empty when
    /// it is complete. One `required` entry per field.
    pub fn missing_for_publish(&self) -> Vec<FieldError> {
        let mut missing = Vec::new();
        let mut need = |field: &str, message: &str| {
            missing.push(FieldError {
                field: field.into(),
                code: "required".into(),
                message: message.into(),
            })
        };
        if self.title.is_none() {
            need("title", "a title is required");
        }
        if self.description.is_none() {
            need("description", "a description is required");
        }
        if self.category_id.is_none() {
            need("category_id", "a category is required");
        }
        if self.location.is_none() {
            need("location", "a location is required");
        }
        match &self.pricing {
            None => need("pricing", "pricing with a currency is required"),
            Some(pricing) => {
                let has_rate =
                    pricing.hourly.is_some() || pricing.daily.is_some() || pricing.weekly.is_some();
                let packages =
                    self.kind == ListingType::Service && !self.service_packages.is_empty();
                if !has_rate && !packages {
                    need(
                        "pricing.rates",
                        "at least one of `hourly`, `daily` or `weekly` is required \
                         (services may offer packages instead)",
                    );
                }
            }
        }
        match self.kind {
            ListingType::Item if self.condition.is_none() => {
                need("condition", "items need a condition")
            }
            ListingType::Service if self.service_scope.is_none() => {
                need("service_scope", "services need a scope")
            }
            ListingType::Property if self.property.is_none() => {
                need("property", "properties need their details")
            }
            _ => {}
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(value: serde_json::Value) -> ListingInput {
        serde_json::from_value(value).unwrap()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    fn complete_item() -> ListingData {
        let mut data = ListingData::new(ListingType::Item);
        data.apply(input(json!({
            "title": " Camera ", "description": "A camera",
            "category_id": "0190c000-0000-7000-8000-000000000101",
            "location": {"lat": 48.8, "lng": 2.3},
            "pricing": {"daily": 1500, "currency": "EUR"},
            "condition": "good"
        })));
        data
    }

    #[test]
    fn apply_trims_sets_and_clears() {
        let mut data = complete_item();
        assert_eq!(data.title.as_deref(), Some("Camera"));
        let set = data.apply(input(
            json!({"title": null, "quantity": null, "instant_book": true}),
        ));
        assert_eq!(set, ["title", "quantity", "instant_book"]);
        assert_eq!(data.title, None);
        assert_eq!(data.quantity, 1);
        assert!(data.instant_book);
        assert!(data.validate().is_empty());
    }

    #[test]
    fn complete_listings_publish_and_incomplete_ones_name_each_gap() {
        assert!(complete_item().missing_for_publish().is_empty());
        let missing = ListingData::new(ListingType::Item).missing_for_publish();
        assert_eq!(
            fields(&missing),
            [
                "title",
                "description",
                "category_id",
                "location",
                "pricing",
                "condition"
            ]
        );
        let mut service = ListingData::new(ListingType::Service);
        service.apply(input(json!({
            "pricing": {"currency": "EUR"},
            "service_packages": [{"name": "Basic", "price": 100}]
        })));
        let missing = service.missing_for_publish();
        assert!(!fields(&missing).contains(&"pricing.rates"));
        assert!(fields(&missing).contains(&"service_scope"));
    }

    #[test]
    fn type_specific_fields_are_refused_on_other_types() {
        let mut data = ListingData::new(ListingType::Service);
        data.apply(input(json!({
            "condition": "new", "included_items": ["cable"],
            "property": {"property_type": "house"}
        })));
        assert_eq!(
            fields(&data.validate()),
            ["condition", "included_items", "property"]
        );
    }

    #[test]
    fn values_out_of_range_are_refused() {
        let mut data = ListingData::new(ListingType::Service);
        data.apply(input(json!({
            "title": "  ", "location": {"lat": 91.0, "lng": 0.0}, "time_zone": "Mars/Base",
            "pricing": {"hourly": -1, "currency": "EUR"}, "quantity": 1001,
            "service_packages": [{"name": "A", "price": 1}, {"name": "a", "price": -5}],
            "booking_rules": {"min_duration_minutes": 120, "max_duration_minutes": 60}
        })));
        let errors = data.validate();
        assert_eq!(
            fields(&errors),
            [
                "title",
                "location.lat",
                "time_zone",
                "pricing.hourly",
                "quantity",
                "service_packages[1].name",
                "service_packages[1].price",
                "booking_rules.min_duration_minutes"
            ]
        );
    }
}
