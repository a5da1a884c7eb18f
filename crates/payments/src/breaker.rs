//! The guard every gateway call goes through: a timeout, so a hung
//! processor cannot hold a request (and its database transaction) forever,
//! and a circuit breaker, so that during an outage Rentify fails fast with
//! a clear "payments unavailable" instead of piling up slow calls — and
//! probes with a single call before trusting the processor again.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use tokio::time::Instant;
use uuid::Uuid;

use crate::gateway::{
    AuthorizeRequest, Card, GatewayError, GatewayRecord, IntentState, Operation, PaymentGateway,
    PayoutDestination,
};

/// How patient the guard is with the processor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// A call that has not answered by then counts as `Unavailable`. The
    /// caller retries with the same idempotency key, so giving up is safe.
    pub call_timeout: Duration,
    /// Consecutive `Unavailable` outcomes that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before one trial call.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(3),
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// A gateway behind a timeout and a circuit breaker; itself a gateway, so
/// the payment code never knows it is there.
///
/// Hand-written rather than `failsafe`: that crate's half-open state lets
/// every call through instead of a single probe, it counts failures with a
/// predicate but not timeouts, it would bring rand 0.8 next to our 0.9, and
/// our metrics would still need wiring by hand. The state machine below is
/// the whole of what we need.
pub struct Guarded {
    inner: Arc<dyn PaymentGateway>,
    config: BreakerConfig,
    state: Mutex<State>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The trial call is under way; everything else is refused.
    HalfOpen,
}

/// Why a call was let through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Trial,
}

/// A trial call's ticket: if the trial is dropped before it reports (its
/// caller was cancelled), the circuit goes back to open-and-expired so the
/// next call becomes the trial instead of the breaker staying half-open.
struct TrialTicket<'a> {
    guard: &'a Guarded,
    reported: bool,
}

impl Drop for TrialTicket<'_> {
    fn drop(&mut self) {
        if !self.reported {
            let mut state = self.guard.lock();
            if *state == State::HalfOpen {
                *state = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

impl Guarded {
    pub fn new(inner: Arc<dyn PaymentGateway>, config: BreakerConfig) -> Self {
        metrics::gauge!("payments_gateway_circuit_open").set(0.0);
        Self {
            inner,
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether a call now would be refused without reaching the processor:
    /// callers check it before starting a saga they could not finish.
    pub fn is_open(&self) -> bool {
        match *self.lock() {
            State::Closed { .. } => false,
            State::Open { until } => Instant::now() < until,
            State::HalfOpen => true,
        }
    }

    /// The wrapped gateway (tests reach the sandbox's controls through it).
    pub fn inner(&self) -> &Arc<dyn PaymentGateway> {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self) -> Option<Admission> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Some(Admission::Normal),
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                Some(Admission::Trial)
            }
            State::Open { .. } | State::HalfOpen => None,
        }
    }

    fn record(&self, admission: Admission, unavailable: bool) {
        let mut state = self.lock();
        let next = match (admission, *state) {
            (Admission::Trial, _) | (Admission::Normal, State::Closed { .. }) if !unavailable => {
                State::Closed { failures: 0 }
            }
            (Admission::Trial, _) => self.opened(),
            (Admission::Normal, State::Closed { failures }) => {
                if failures + 1 >= self.config.failure_threshold {
                    self.opened()
                } else {
                    State::Closed {
                        failures: failures + 1,
                    }
                }
            }
            // A call that started before the circuit opened says nothing
            // about what the trial should decide.
            (Admission::Normal, current) => current,
        };
        if matches!(next, State::Closed { .. }) && !matches!(*state, State::Closed { .. }) {
            tracing::info!("payment gateway circuit closed");
            metrics::gauge!("payments_gateway_circuit_open").set(0.0);
        }
        *state = next;
    }

    fn opened(&self) -> State {
        tracing::warn!(
            open_for = ?self.config.open_for,
            "payment gateway circuit opened"
        );
        metrics::gauge!("payments_gateway_circuit_open").set(1.0);
        State::Open {
            until: Instant::now() + self.config.open_for,
        }
    }

    async fn guard<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, GatewayError>> + Send,
    ) -> Result<T, GatewayError> {
        let Some(admission) = self.admit() else {
            count(op, "rejected");
            return Err(GatewayError::Unavailable("circuit open".into()));
        };
        let mut ticket = TrialTicket {
            guard: self,
            reported: admission == Admission::Normal,
        };
        let (result, outcome) = match tokio::time::timeout(self.config.call_timeout, call).await {
            Ok(result) => {
                let outcome = match &result {
                    Ok(_) => "ok",
                    Err(GatewayError::Declined { .. }) => "declined",
                    Err(GatewayError::Invalid(_)) => "invalid",
                    Err(GatewayError::Unavailable(_)) => "unavailable",
                };
                (result, outcome)
            }
            Err(_) => (Err(GatewayError::Unavailable("timeout".into())), "timeout"),
        };
        count(op, outcome);
        self.record(
            admission,
            matches!(result, Err(GatewayError::Unavailable(_))),
        );
        ticket.reported = true;
        result
    }
}

fn count(op: &'static str, outcome: &'static str) {
    metrics::counter!("payments_gateway_calls_total", "op" => op, "outcome" => outcome)
        .increment(1);
}

#[async_trait]
impl PaymentGateway for Guarded {
    async fn create_method(&self, token: &str) -> Result<Card, GatewayError> {
        self.guard("create_method", self.inner.create_method(token))
            .await
    }

    async fn authorize(&self, req: &AuthorizeRequest) -> Result<IntentState, GatewayError> {
        self.guard("authorize", self.inner.authorize(req)).await
    }

    async fn capture(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
        amount: i64,
    ) -> Result<IntentState, GatewayError> {
        self.guard(
            "capture",
            self.inner.capture(idempotency_key, intent_id, amount),
        )
        .await
    }

    async fn void(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
    ) -> Result<IntentState, GatewayError> {
        self.guard("void", self.inner.void(idempotency_key, intent_id))
            .await
    }

    async fn refund(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
        amount: i64,
    ) -> Result<Operation, GatewayError> {
        self.guard(
            "refund",
            self.inner.refund(idempotency_key, intent_id, amount),
        )
        .await
    }

    async fn create_payout_destination(
        &self,
        token: &str,
    ) -> Result<PayoutDestination, GatewayError> {
        self.guard(
            "create_payout_destination",
            self.inner.create_payout_destination(token),
        )
        .await
    }

    async fn payout(
        &self,
        idempotency_key: &str,
        provider_account_id: &str,
        amount: i64,
        currency: &str,
    ) -> Result<Operation, GatewayError> {
        self.guard(
            "payout",
            self.inner
                .payout(idempotency_key, provider_account_id, amount, currency),
        )
        .await
    }

    async fn records(&self, day: NaiveDate) -> Result<Vec<GatewayRecord>, GatewayError> {
        self.guard("records", self.inner.records(day)).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A gateway that answers from a script (`Ok` when it runs out) and
    /// counts the calls that reached it.
    #[derive(Default)]
    struct Scripted {
        script: Mutex<VecDeque<Step>>,
        calls: AtomicUsize,
    }

    #[derive(Clone)]
    enum Step {
        Ok,
        Fail(GatewayError),
        Hang,
    }

    impl Scripted {
        fn new(steps: impl IntoIterator<Item = Step>) -> Arc<Self> {
            Arc::new(Self {
                script: Mutex::new(steps.into_iter().collect()),
                calls: AtomicUsize::new(0),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        async fn next(&self) -> Result<(), GatewayError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let step = self.script.lock().unwrap().pop_front().unwrap_or(Step::Ok);
            match step {
                Step::Ok => Ok(()),
                Step::Fail(e) => Err(e),
                Step::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
            }
        }
    }

    fn op() -> Operation {
        Operation {
            provider_id: "re_1".into(),
            amount: 1,
            currency: "EUR".into(),
        }
    }

    fn intent() -> IntentState {
        IntentState {
            provider_intent_id: "pi_1".into(),
            status: crate::gateway::IntentStatus::Authorized,
            amount: 1,
            amount_captured: 0,
            amount_refunded: 0,
            currency: "EUR".into(),
        }
    }

    #[async_trait]
    impl PaymentGateway for Scripted {
        async fn create_method(&self, _: &str) -> Result<Card, GatewayError> {
            self.next().await?;
            Ok(Card {
                provider_method_id: "pm_1".into(),
                brand: "visa".into(),
                last4: "4242".into(),
                exp_month: 12,
                exp_year: 2030,
            })
        }
        async fn authorize(&self, _: &AuthorizeRequest) -> Result<IntentState, GatewayError> {
            self.next().await.map(|()| intent())
        }
        async fn capture(&self, _: &str, _: Uuid, _: i64) -> Result<IntentState, GatewayError> {
            self.next().await.map(|()| intent())
        }
        async fn void(&self, _: &str, _: Uuid) -> Result<IntentState, GatewayError> {
            self.next().await.map(|()| intent())
        }
        async fn refund(&self, _: &str, _: Uuid, _: i64) -> Result<Operation, GatewayError> {
            self.next().await.map(|()| op())
        }
        async fn create_payout_destination(
            &self,
            _: &str,
        ) -> Result<PayoutDestination, GatewayError> {
            self.next().await.map(|()| PayoutDestination {
                provider_account_id: "ba_1".into(),
                bank_name: "Sandbox Bank".into(),
                last4: "6789".into(),
            })
        }
        async fn payout(
            &self,
            _: &str,
            _: &str,
            _: i64,
            _: &str,
        ) -> Result<Operation, GatewayError> {
            self.next().await.map(|()| op())
        }
        async fn records(&self, _: NaiveDate) -> Result<Vec<GatewayRecord>, GatewayError> {
            self.next().await.map(|()| Vec::new())
        }
    }

    fn down() -> Step {
        Step::Fail(GatewayError::Unavailable("503".into()))
    }

    fn config(threshold: u32, open_for_ms: u64) -> BreakerConfig {
        BreakerConfig {
            call_timeout: Duration::from_millis(50),
            failure_threshold: threshold,
            open_for: Duration::from_millis(open_for_ms),
        }
    }

    async fn refund(guarded: &Guarded) -> Result<Operation, GatewayError> {
        guarded.refund("k", Uuid::nil(), 1).await
    }

    #[tokio::test]
    async fn opens_after_consecutive_unavailable_and_fails_fast() {
        let fake = Scripted::new([down(), down(), down()]);
        let guarded = Guarded::new(fake.clone(), config(3, 60_000));
        for _ in 0..3 {
            assert!(matches!(
                refund(&guarded).await,
                Err(GatewayError::Unavailable(_))
            ));
        }
        assert!(guarded.is_open());
        assert_eq!(
            refund(&guarded).await,
            Err(GatewayError::Unavailable("circuit open".into()))
        );
        assert_eq!(
            fake.calls(),
            3,
            "an open circuit does not reach the gateway"
        );
    }

    #[tokio::test]
    async fn a_success_resets_the_count_and_business_errors_are_successes() {
        let declined = Step::Fail(GatewayError::Declined {
            code: "card_declined".into(),
            message: "no".into(),
        });
        let invalid = Step::Fail(GatewayError::Invalid("bad".into()));
        let fake = Scripted::new([
            down(),
            down(),
            Step::Ok,
            down(),
            down(),
            declined,
            down(),
            down(),
            invalid,
            down(),
            down(),
        ]);
        let guarded = Guarded::new(fake.clone(), config(3, 60_000));
        for _ in 0..11 {
            let _ = refund(&guarded).await;
        }
        assert!(!guarded.is_open());
        assert_eq!(fake.calls(), 11);
    }

    #[tokio::test]
    async fn a_timeout_is_unavailable_and_counts_as_a_failure() {
        let fake = Scripted::new([Step::Hang, Step::Hang]);
        let guarded = Guarded::new(fake.clone(), config(2, 60_000));
        assert_eq!(
            refund(&guarded).await,
            Err(GatewayError::Unavailable("timeout".into()))
        );
        assert!(!guarded.is_open());
        assert_eq!(
            refund(&guarded).await,
            Err(GatewayError::Unavailable("timeout".into()))
        );
        assert!(guarded.is_open());
    }

    #[tokio::test]
    async fn half_open_lets_one_trial_through_and_success_closes() {
        let fake = Scripted::new([down(), Step::Hang]);
        let guarded = Arc::new(Guarded::new(
            fake.clone(),
            BreakerConfig {
                call_timeout: Duration::from_millis(300),
                ..config(1, 30)
            },
        ));
        let _ = refund(&guarded).await;
        assert!(guarded.is_open());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(
            !guarded.is_open(),
            "the open period is over: a trial may go"
        );

        // The trial hangs; meanwhile every other call is refused.
        let trial = {
            let guarded = guarded.clone();
            tokio::spawn(async move { refund(&guarded).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(guarded.is_open());
        assert_eq!(
            refund(&guarded).await,
            Err(GatewayError::Unavailable("circuit open".into()))
        );
        assert_eq!(fake.calls(), 2);
        // The trial times out: open again.
        assert!(trial.await.unwrap().is_err());
        assert!(guarded.is_open());

        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(refund(&guarded).await.is_ok(), "a successful trial");
        assert!(!guarded.is_open());
        assert!(refund(&guarded).await.is_ok());
        assert_eq!(fake.calls(), 4);
    }

    #[tokio::test]
    async fn a_failed_trial_reopens() {
        let fake = Scripted::new([down(), down(), down()]);
        let guarded = Guarded::new(fake.clone(), config(1, 30));
        let _ = refund(&guarded).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(matches!(
            refund(&guarded).await,
            Err(GatewayError::Unavailable(reason)) if reason == "503"
        ));
        assert!(guarded.is_open());
        assert_eq!(
            refund(&guarded).await,
            Err(GatewayError::Unavailable("circuit open".into()))
        );
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test]
    async fn a_cancelled_trial_does_not_wedge_the_breaker() {
        let fake = Scripted::new([down(), Step::Hang]);
        let guarded = Arc::new(Guarded::new(
            fake.clone(),
            BreakerConfig {
                call_timeout: Duration::from_secs(60),
                ..config(1, 10)
            },
        ));
        let _ = refund(&guarded).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let trial = {
            let guarded = guarded.clone();
            tokio::spawn(async move { refund(&guarded).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(guarded.is_open());
        trial.abort();
        let _ = trial.await;
        assert!(!guarded.is_open());
        assert!(refund(&guarded).await.is_ok());
        assert!(!guarded.is_open());
    }

    #[tokio::test]
    async fn every_method_is_guarded() {
        let fake = Scripted::new([]);
        let guarded = Guarded::new(fake.clone(), config(1, 60_000));
        let req = AuthorizeRequest {
            intent_id: Uuid::nil(),
            provider_method_id: "pm_1".into(),
            amount: 1,
            currency: "EUR".into(),
            capture: false,
            description: String::new(),
        };
        guarded.create_method("tok_visa").await.unwrap();
        guarded.authorize(&req).await.unwrap();
        guarded.capture("k", Uuid::nil(), 1).await.unwrap();
        guarded.void("k", Uuid::nil()).await.unwrap();
        guarded.refund("k", Uuid::nil(), 1).await.unwrap();
        guarded.create_payout_destination("btok_ok").await.unwrap();
        guarded.payout("k", "ba_1", 1, "EUR").await.unwrap();
        guarded
            .records(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())
            .await
            .unwrap();
        assert_eq!(fake.calls(), 8);
    }
}
