//! Credit budgets: what one provider spent today and this month, and whether a call would
//! overrun its budget or run ahead of the budget's pace.
//!
//! Budget days are UTC days; budget months are 30-day periods since the epoch. Pure: every
//! method takes the time in ms, so the rules are tested without a clock.

use super::ProviderPolicy;

/// One UTC day in ms.
pub(super) const DAY_MS: i64 = 86_400_000;
/// One budget month (30 days) in ms.
const MONTH_MS: i64 = 30 * DAY_MS;

/// Credits spent against daily and monthly budgets.
#[derive(Debug, Default)]
pub(super) struct Spend {
    day: i64,
    today: u64,
    month: i64,
    this_month: u64,
}

/// What a budget says about one more call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verdict {
    /// The call would overrun a budget (or one is already spent).
    pub(super) exhausted: bool,
    /// Spending runs ahead of the budget's pace for this point of the day or month.
    pub(super) over_pace: bool,
}

impl Spend {
    /// Start from what was already spent (after a restart).
    pub(super) fn seed(&mut self, now_ms: i64, today: u64, this_month: u64) {
        self.roll(now_ms);
        self.today = today;
        self.this_month = this_month;
    }

    fn roll(&mut self, now_ms: i64) {
        let (day, month) = (now_ms / DAY_MS, now_ms / MONTH_MS);
        if day != self.day {
            self.day = day;
            self.today = 0;
        }
        if month != self.month {
            self.month = month;
            self.this_month = 0;
        }
    }

    /// Count `credits` spent now.
    pub(super) fn add(&mut self, now_ms: i64, credits: u64) {
        self.roll(now_ms);
        self.today = self.today.saturating_add(credits);
        self.this_month = self.this_month.saturating_add(credits);
    }

    /// Credits spent in the budget day of `now_ms`.
    pub(super) fn today(&self, now_ms: i64) -> u64 {
        if self.day == now_ms / DAY_MS { self.today } else { 0 }
    }

    /// Credits spent in the budget month of `now_ms`.
    pub(super) fn this_month(&self, now_ms: i64) -> u64 {
        if self.month == now_ms / MONTH_MS { self.this_month } else { 0 }
    }

    /// Judge `need` more credits against the policy's budgets; `headroom` is the share of a
    /// budget kept in reserve when judging the pace.
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn judge(&self, p: &ProviderPolicy, now_ms: i64, headroom: f64, need: u64) -> Verdict {
        let mut v = Verdict { exhausted: false, over_pace: false };
        let mut check = |budget: Option<u64>, spent: u64, period_ms: i64| {
            let Some(b) = budget else { return };
            if spent.saturating_add(need) > b || spent >= b {
                v.exhausted = true;
            }
            let elapsed = (now_ms.rem_euclid(period_ms)) as f64 / period_ms as f64;
            if (spent as f64) > (b as f64) * (elapsed + headroom).min(1.0 - headroom) {
                v.over_pace = true;
            }
        };
        check(p.daily_credit_budget, self.today(now_ms), DAY_MS);
        check(p.monthly_credit_budget, self.this_month(now_ms), MONTH_MS);
        v
    }
}

/// Start of the budget day and budget month (ms) that hold `now_ms`.
pub(super) fn periods(now_ms: i64) -> (i64, i64) {
    (now_ms - now_ms.rem_euclid(DAY_MS), now_ms - now_ms.rem_euclid(MONTH_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(exhausted: bool, over_pace: bool) -> Verdict {
        Verdict { exhausted, over_pace }
    }

    #[test]
    fn budgets_exhaust_and_pace() {
        let p = ProviderPolicy { daily_credit_budget: Some(1000), ..ProviderPolicy::default() };
        let mut s = Spend::default();
        // six hours into a day: pace allows 25% + 10% headroom
        let t = 100 * DAY_MS + DAY_MS / 4;
        s.add(t, 300);
        assert_eq!(s.judge(&p, t, 0.1, 0), v(false, false));
        s.add(t, 100);
        assert_eq!(s.judge(&p, t, 0.1, 0), v(false, true));
        // a call that would overrun the budget is refused before it is made
        assert!(s.judge(&p, t, 0.1, 700).exhausted);
        s.add(t, 600);
        assert_eq!(s.judge(&p, t, 0.1, 0), v(true, true));
        // a new day starts from zero
        assert_eq!(s.judge(&p, t + DAY_MS, 0.1, 0), v(false, false));
        assert_eq!((s.today(t), s.today(t + DAY_MS)), (1000, 0));
    }

    #[test]
    fn monthly_budgets_and_seeding() {
        let p = ProviderPolicy { monthly_credit_budget: Some(10_000), ..ProviderPolicy::default() };
        let mut s = Spend::default();
        let t = 31 * MONTH_MS + MONTH_MS / 2;
        s.seed(t, 100, 9_950);
        assert_eq!((s.today(t), s.this_month(t)), (100, 9_950));
        assert!(!s.judge(&p, t, 0.1, 50).exhausted);
        assert!(s.judge(&p, t, 0.1, 51).exhausted);
        assert_eq!(periods(t), (t - t.rem_euclid(DAY_MS), 31 * MONTH_MS));
    }
}
