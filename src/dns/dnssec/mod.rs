//! DNSSEC: whether a name validates as the CA will see it, where its chain of trust breaks,
//! and whether the signing zone's servers serve valid signatures.
//!
//! `request` and `renew` ask the host's resolver as a CA's resolver is asked (DO and AD set)
//! about each `_acme-challenge` name and the signing zone. Secure and insecure are both fine;
//! a SERVFAIL is asked again with CD, which tells a bogus chain (the data is there, it does
//! not validate) from a broken one (no data at all). A bogus chain is then looked at here, from
//! the data fetched with CD: the DS at each parent, each zone's DNSKEY set, the RRSIG windows
//! and signatures, so that the refusal names the zone and the record. The resolver's own
//! reason (an extended DNS error, RFC 8914) is shown beside it when it gave one.
//!
//! The signing zone is asked at its apex (SOA), not at the record a host will publish: that
//! record does not exist yet, and asking for it would leave an NXDOMAIN in the resolver's
//! negative cache. The record's own signature is `publish`'s to check: it verifies, on every
//! authoritative server, the zone's keys against the parent's DS, the SOA's signature and
//! every published TXT set's signature.
//!
//! The cryptography is hickory-proto's (`Verifier` for DNSKEY, `DS::covers`); this module
//! picks the records and says what it found. It is not a validator: it looks at the zone of a
//! name and the zones above it, which is enough to say where a chain breaks.
//!
//! One noun a file: `chain` (the resolver's verdict on a name and where a bogus chain
//! breaks, before ordering), `servers` (every authoritative server's signatures, after
//! publishing) and `verify` (the keys and signatures both look at, and what is wrong with
//! them).

mod chain;
mod servers;
mod verify;

pub(crate) use chain::{ChainError, check_chains};
pub(crate) use servers::{InvalidServer, check_servers};
