//! DNS UPDATE (RFC 2136) signed with TSIG (RFC 8945), over one TCP connection to the primary.
//!
//! [`UpdateClient`] reads the zone (a signed AXFR, or signed TXT questions where the transfer
//! is refused), sends UPDATE messages and asks the serial. Every message it sends is signed;
//! an answer counts only when its signature verifies, except that a refusal is believed
//! without one (it changes nothing, and a forged one only stops the run). TSIG errors
//! (BADKEY, BADSIG, BADTIME) and the UPDATE codes (REFUSED, NOTAUTH, NOTZONE) each become one
//! [`UpdateError`] that names the server, the key and the fix.
//!
//! [`SetChange`] is one TXT record set's change as one atomic step: its prerequisite is the
//! set as it was read (RFC 2136 section 2.4.2, or 2.4.3 for a set that did not exist), so a
//! change someone else made in between fails the message (NXRRSET) instead of being
//! overwritten. [`pack`] puts the steps into as few messages as fit in 64 KiB; a set too
//! large for one message is split into additions first and deletions after, so no value the
//! new set keeps is ever missing in between.
//!
//! One noun a file: `error` ([`UpdateError`] and the policy line a refusal carries), `change`
//! ([`SetChange`], [`pack`] and the UPDATE message they become) and `client` ([`UpdateClient`],
//! the signed exchanges with the primary).

mod change;
mod client;
mod error;

pub(crate) use change::{SetChange, pack};
pub(crate) use client::UpdateClient;
pub(crate) use error::UpdateError;
