//! A saved order at the start of `request`: re-opened at its own CA, primary or fallback, or
//! found to be of no more use.

use time::OffsetDateTime;

use super::{AcmeError, Cas, Challenge, DeadOrder, PendingOrder, Reopened, reopen};
use crate::cert::KeyType;
use crate::dns::DnsName;
use crate::state::StateDir;

/// A saved order, after asking its CA about it.
#[derive(Debug)]
pub(crate) enum Resumed {
    /// Still good: the values of its pending authorizations.
    Open(Vec<Challenge>),
    /// Of no more use: it no longer fits the config (`None`: the config says why), or it
    /// cannot complete, and why.
    Dropped(Option<DeadOrder>),
}

/// Re-opens `saved` for a certificate of `names` and `key`. The order's CA unreachable is an
/// error and keeps the order (the next run asks again): only a CA that answers can say the
/// order is dead.
pub(crate) async fn resume(
    cas: &Cas<'_>,
    state: &StateDir,
    saved: &PendingOrder,
    names: &[DnsName],
    key: KeyType,
    now: OffsetDateTime,
) -> Result<Resumed, AcmeError> {
    let Some(ca) = cas.order_ca(saved, names, key) else {
        return Ok(Resumed::Dropped(None));
    };
    let account = ca.account(state, true).await?;
    if saved.account != account.id() {
        return Ok(Resumed::Dropped(Some(DeadOrder::OtherAccount)));
    }
    Ok(match reopen(account, saved, now).await? {
        Reopened::Open(challenges) => Resumed::Open(challenges),
        Reopened::Dead(why) => Resumed::Dropped(Some(why)),
    })
}
