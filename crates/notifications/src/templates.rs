//! What notifications say, per kind and locale (minijinja templates built
//! into the binary, so a deployment cannot miss one).
//!
//! Each kind has, under `templates/<locale>/`:
//! - `<kind>.txt` with the blocks `subject` (the in-app title, the email's
//!   subject, the push title), `summary` (the in-app body, the SMS and the
//!   push text) and `text` (the plain-text email);
//! - `<kind>.html`, the HTML email, extending `<locale>/layout.html`
//!   (auto-escaped, as every `.html` template is).
//!
//! A locale without a kind's templates falls back to English. Every
//! variable a template uses must be in [`TemplateContext`]: rendering is
//! strict, and the unit tests render every kind in every locale.

use minijinja::{Environment, UndefinedBehavior, Value, syntax::SyntaxConfig, value::Serde};
use serde::Serialize;

use crate::preferences::Locale;

/// Loads `templates/<locale>/<kind>.{txt,html}` for every kind, and the
/// locale's layout.
macro_rules! sources {
    ($locale:literal; $($kind:literal),* $(,)?) => {
        &[
            (concat!($locale, "/layout.html"), include_str!(concat!("../templates/", $locale, "/layout.html"))),
            $(
                (concat!($locale, "/", $kind, ".txt"), include_str!(concat!("../templates/", $locale, "/", $kind, ".txt"))),
                (concat!($locale, "/", $kind, ".html"), include_str!(concat!("../templates/", $locale, "/", $kind, ".html"))),
            )*
        ]
    };
}

/// Calls `$then!` with the kinds of notification there are templates for,
/// after `$args`: the one list [`KINDS`] and the embedded sources come from.
macro_rules! with_kinds {
    ($then:ident!($($args:tt)*)) => {
        $then!(
            $($args)*
            "booking.requested",
            "booking.approved",
            "booking.declined",
            "booking.cancelled",
            "booking.started",
            "booking.completed",
            "booking.extended",
            "booking.disputed",
            "booking.resolved",
            "payment_failed",
            "review_prompt",
            "user.registered",
        )
    };
}

macro_rules! kind_list {
    ($($kind:literal),* $(,)?) => {
        &[$($kind),*]
    };
}

/// Every kind of notification there is a template for.
pub const KINDS: &[&str] = with_kinds!(kind_list!());

static SOURCES: [&[(&str, &str)]; 2] = [with_kinds!(sources!("en";)), with_kinds!(sources!("fr";))];

/// What templates may use. Strings are formatted for the recipient's
/// locale already (dates in the listing's time zone, amounts with their
/// currency).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TemplateContext {
    /// `en`, `fr`: set by the renderer.
    pub locale: &'static str,
    /// The recipient's part in the booking: `renter` or `owner`.
    pub role: Option<&'static str>,
    /// Who acted: `renter`, `owner`, `admin` or `system` (timers, payments).
    pub actor: Option<&'static str>,
    /// Whether the recipient did it themselves.
    pub by_you: bool,
    pub listing_title: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub total: Option<String>,
    /// What the renter gets back (cancellations, resolutions).
    pub refund: Option<String>,
    /// The machine reason of a transition (`expired`, `payment_timeout`, a
    /// decline code…).
    pub reason: Option<String>,
    /// The new end of an extended booking.
    pub new_end: Option<String>,
    /// Set for the HTML body (the layout's title).
    pub subject: Option<String>,
}

/// A notification's texts in one locale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// One line: the in-app title, the email subject, the push title.
    pub subject: String,
    /// A sentence or two: the in-app body, the SMS and push text.
    pub summary: String,
    /// The plain-text email body.
    pub text: String,
    /// The HTML email body.
    pub html: String,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new() -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()?,
        );
        for (name, source) in SOURCES.iter().flat_map(|locale| locale.iter()) {
            env.add_template(name, source)
                .map_err(|e| anyhow::anyhow!("template {name}: {e:#}"))?;
        }
        Ok(Self { env })
    }

    /// Renders `kind` for `locale` (English when the locale lacks it).
    pub fn render(
        &self,
        kind: &str,
        locale: Locale,
        context: &TemplateContext,
    ) -> anyhow::Result<Rendered> {
        let locale = if self
            .env
            .get_template(&format!("{}/{kind}.txt", locale.as_str()))
            .is_ok()
        {
            locale
        } else {
            Locale::En
        };
        let mut context = context.clone();
        context.locale = locale.as_str();
        let name = format!("{}/{kind}", locale.as_str());
        let text_template = self
            .env
            .get_template(&format!("{name}.txt"))
            .map_err(|e| anyhow::anyhow!("no template for {kind}: {e}"))?;
        let mut captured = text_template
            .render_captured(Value::from(Serde(&context)))
            .map_err(|e| anyhow::anyhow!("template {name}.txt: {e:#}"))?;
        let (subject, summary, text) = captured
            .with_state_mut(|state| {
                Ok::<_, minijinja::Error>((
                    state.render_block("subject")?,
                    state.render_block("summary")?,
                    state.render_block("text")?,
                ))
            })
            .map_err(|e| anyhow::anyhow!("template {name}.txt: {e:#}"))?;
        let subject = one_line(&subject);
        let summary = one_line(&summary);
        let text = tidy(&text);
        context.subject = Some(subject.clone());
        let html = self
            .env
            .get_template(&format!("{name}.html"))
            .and_then(|t| t.render(Value::from(Serde(&context))))
            .map_err(|e| anyhow::anyhow!("template {name}.html: {e:#}"))?;
        Ok(Rendered {
            subject,
            summary,
            text,
            html: tidy(&html),
        })
    }
}

/// Collapses whitespace (line breaks included) into single spaces.
fn one_line(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Trims each line's end and the whole, and keeps at most one blank line in a row.
fn tidy(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut blank = 0;
    for line in value.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_context() -> TemplateContext {
        TemplateContext {
            role: Some("renter"),
            actor: Some("owner"),
            by_you: false,
            listing_title: Some("Camera <kit> & lens".into()),
            start: Some("2026-01-10 10:00".into()),
            end: Some("2026-01-12 10:00".into()),
            total: Some("55.00 EUR".into()),
            refund: Some("27.50 EUR".into()),
            reason: Some("expired".into()),
            new_end: Some("2026-01-13 10:00".into()),
            ..TemplateContext::default()
        }
    }

    #[test]
    fn every_kind_renders_in_every_locale_for_every_role() {
        let templates = Templates::new().unwrap();
        for kind in KINDS {
            for locale in Locale::ALL {
                for role in [Some("renter"), Some("owner"), None] {
                    for by_you in [false, true] {
                        for context in [
                            TemplateContext {
                                role,
                                by_you,
                                ..full_context()
                            },
                            TemplateContext {
                                role,
                                by_you,
                                ..TemplateContext::default()
                            },
                        ] {
                            let r = templates
                                .render(kind, locale, &context)
                                .unwrap_or_else(|e| panic!("{kind} {locale:?}: {e:#}"));
                            assert!(!r.subject.is_empty(), "{kind} {locale:?}: no subject");
                            assert!(!r.summary.is_empty(), "{kind} {locale:?}: no summary");
                            assert!(!r.text.is_empty(), "{kind} {locale:?}: no text");
                            assert!(
                                r.html.contains("<html")
                                    && r.html.contains(&html_escape(&r.subject)),
                                "{kind} {locale:?}: {}",
                                r.html
                            );
                        }
                    }
                }
            }
        }
    }

    fn html_escape(value: &str) -> String {
        value
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let templates = Templates::new().unwrap();
        let r = templates
            .render("booking.approved", Locale::En, &full_context())
            .unwrap();
        assert!(r.text.contains("Camera <kit> & lens"), "{}", r.text);
        assert!(
            r.html.contains("Camera &lt;kit&gt; &amp; lens"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<kit>"));
    }

    #[test]
    fn french_is_french_and_unknown_kinds_fail() {
        let templates = Templates::new().unwrap();
        let en = templates
            .render("booking.approved", Locale::En, &full_context())
            .unwrap();
        let fr = templates
            .render("booking.approved", Locale::Fr, &full_context())
            .unwrap();
        assert_ne!(en.subject, fr.subject);
        assert!(fr.html.contains("lang=\"fr\""));
        assert!(
            templates
                .render("nope", Locale::En, &full_context())
                .is_err()
        );
    }
}
