//! The `review_ratings` consumer: keeps each user's `rating_summary` in
//! step with the reviews they received, asynchronously, so writing a review
//! never waits on (or contends for) the reviewed account's row. Every
//! `review.*` event recomputes the target's summary from the published,
//! visible reviews (a recount, not an increment: a redelivered or
//! reordered event cannot skew it); a change is announced as
//! `user.rating_updated {user_id, avg, count}` in the same transaction,
//! which the search index (listings inherit their owner's rating) and the
//! trust score follow.

use rentify_events::{Consumer, Context, Event, Handler, Priority};
use rentify_platform::outbox::{self, NewEvent};
use serde_json::json;

use crate::accounts;

pub fn consumer() -> Consumer {
    Consumer::new("review_ratings", Ratings)
        .on("review.*")
        .priority(Priority::Normal)
}

struct Ratings;

#[async_trait::async_trait]
impl Handler for Ratings {
    async fn handle(&self, cx: &mut Context<'_>, event: &Event) -> anyhow::Result<()> {
        let Some(user_id) = event.uuid("target_id") else {
            tracing::warn!(event.id = %event.id, event.type = %event.event_type, "review event without a target_id ignored");
            return Ok(());
        };
        if let Some(summary) = accounts::refresh_rating_summary(&mut *cx.tx, user_id).await? {
            outbox::record(
                &mut *cx.tx,
                NewEvent {
                    event_type: "user.rating_updated",
                    aggregate_type: "user",
                    aggregate_id: user_id.to_string(),
                    payload: json!({
                        "user_id": user_id,
                        "avg": summary.avg,
                        "count": summary.count,
                    }),
                },
            )
            .await?;
        }
        Ok(())
    }
}
