//! The dynamic-update publisher: read the zone from its primary, send signed UPDATE messages
//! (RFC 2136 with TSIG) that change only fleetcert's TXT values, ask the primary's serial.
//!
//! Which values are fleetcert's: exactly those its own UPDATE messages added and that are
//! still there, listed in `<zone>.published.json` beside the ledger (0600). A value a host
//! asks for that is already in the zone (another client's, a standalone host's key's, the
//! operator's) is left as it is and never becomes fleetcert's, so fleetcert never deletes it
//! when the host stops asking. The list is widened with the values a message will add before
//! it goes out and narrowed only after the last one was taken, so a run killed between two
//! messages leaves nothing in the zone that the next run does not recognise as its own. The
//! ledger alone could not tell: it is saved before the zone changes, so after such a crash it
//! no longer names the values that were on their way out. Everything else is never touched:
//! SOA and NS (the primary owns the serial), the operator's A, CNAME or TXT records, even a
//! foreign TXT value at one of fleetcert's names, even the same value as a host's.
//!
//! Every run reads the zone afresh: by a signed AXFR, or by signed TXT questions at the few
//! names of interest (a host's `renew`, or a key the primary will not give the zone to). Per
//! name it adds the missing values and deletes the stale ones, with the set as read as the
//! prerequisite (`dns::update`). A failed prerequisite means another client changed one of
//! those sets in between: the step is redone from a new read, so that change is kept, never
//! overwritten. Any other failure undoes the messages the primary already took, newest
//! first, so that a refused name or key leaves the zone as it was; then the flow puts the old
//! ledger back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use hickory_proto::rr::rdata::TXT;
use serde::{Deserialize, Serialize};

use super::ZoneError;
use super::ledger::{Values, values};
use super::publish::{Home, Primary, Written, ZoneWriter};
use crate::config::UpdateTarget;
use crate::dns::{DnsName, Served, SetChange, SetCheck, UpdateClient, UpdateError, pack};
use crate::shown::path as shown_path;
use crate::store::{self, Access, Dir, Existing, Versioned};
use crate::token::{TxtRecord, TxtValue};

/// How many times a step whose prerequisite failed is read and tried again.
const ATTEMPTS: u32 = 5;
/// Up to this many names are read by questions; more, by a zone transfer (one transfer of a
/// large zone is quicker than thousands of questions, a few questions quicker than any zone).
const MAX_NAMES_BY_QUESTION: usize = 32;

/// The values fleetcert has put in the zone (or is about to), as saved.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Published {
    version: u32,
    records: BTreeSet<TxtRecord>,
}

impl Versioned for Published {
    const VERSION: u32 = 1;
    const WHAT: &'static str = "fleetcert's list of the TXT values it put in the zone";
    /// 10,000 records of about 100 bytes each, and room to spare.
    const MAX_BYTES: u64 = 64 << 20;
}

/// Publishes by DNS UPDATE (see the module doc).
pub(crate) struct UpdateWriter<'c> {
    target: &'c UpdateTarget,
    zone: &'c DnsName,
    ttl: u32,
    /// `None`: a dry run, and `state_dir` does not exist yet.
    home: Option<Home>,
    /// Only say what would be sent (`--dry-run`).
    dry_run: bool,
    /// The name of the published list in `home`.
    published: String,
}

impl<'c> UpdateWriter<'c> {
    /// Opens (creating, 0700) the state directory where the ledger and the lock live; a dry
    /// run only opens it when it is there, and creates nothing.
    pub(crate) fn open(
        target: &'c UpdateTarget,
        zone: &'c DnsName,
        ttl: u32,
        dry_run: bool,
    ) -> Result<Self, ZoneError> {
        let dir = if dry_run {
            Dir::open_existing(&target.state_dir)?
        } else {
            let dir = Dir::ensure(
                &target.state_dir,
                Access::private(store::PRIVATE_DIR_MODE),
                Existing::RefuseIfOthersWrite,
            )?;
            dir.sweep()?;
            Some(dir)
        };
        Ok(Self {
            target,
            zone,
            ttl,
            home: dir.map(|dir| Home {
                dir,
                ledger: format!("{zone}.ledger.json"),
                lock: format!("{zone}.lock"),
            }),
            published: format!("{zone}.published.json"),
            dry_run,
        })
    }

    /// Whether fleetcert has values of its own in the zone (or may have: a run that died
    /// between its messages).
    pub(crate) fn holds_records(&self) -> Result<bool, ZoneError> {
        Ok(!self.load_published()?.is_empty())
    }

    fn load_published(&self) -> Result<BTreeSet<TxtRecord>, ZoneError> {
        let Some(home) = &self.home else {
            return Ok(BTreeSet::new());
        };
        let published: Option<Published> = home.dir.load_state(&self.published)?;
        Ok(published
            .map(|file| file.records)
            .unwrap_or_default()
            .into_iter()
            // A record outside the zone (an edited file, a changed `zone`) is not ours here.
            .filter(|record| record.name.is_in(self.zone))
            .collect())
    }

    /// Saves the published list; never called in a dry run, which has opened the directory.
    fn save_published(&self, records: BTreeSet<TxtRecord>) -> Result<(), ZoneError> {
        let Some(home) = &self.home else {
            return Ok(());
        };
        let file = Published {
            version: Published::VERSION,
            records,
        };
        Ok(home.dir.save_state(&self.published, &file)?)
    }

    async fn connect(&self) -> Result<UpdateClient, UpdateError> {
        UpdateClient::connect(
            self.target.server,
            self.zone,
            &self.target.key,
            shown_path(&self.target.secret_file),
        )
        .await
    }

    /// The TXT sets at `names` as the primary holds them now.
    async fn read(
        &self,
        client: &mut UpdateClient,
        names: &[&DnsName],
    ) -> Result<BTreeMap<DnsName, Vec<TXT>>, UpdateError> {
        if names.len() > MAX_NAMES_BY_QUESTION {
            if let Some((serial, sets)) = client.transfer_txt().await? {
                tracing::debug!(serial, sets = sets.len(), "zone read by transfer");
                return Ok(sets);
            }
            tracing::info!(
                server = %self.target.server,
                "the primary refused the zone transfer: asking for each TXT set instead"
            );
        }
        client.query_txt(names).await
    }

    /// Changes the zone until it holds `wanted` among `ours`; whether anything was sent (or,
    /// in a dry run, would be). `applied` collects what the primary took; `owned`, the saved
    /// list of fleetcert's values, is widened (and saved) with what a message adds before it
    /// goes out.
    async fn converge(
        &self,
        client: &mut UpdateClient,
        wanted: &Values<'_>,
        ours: &Values<'_>,
        dry_run: bool,
        applied: &mut Vec<SetChange>,
        owned: &mut BTreeSet<TxtRecord>,
    ) -> Result<bool, ZoneError> {
        let names: Vec<&DnsName> = ours.keys().copied().collect();
        for attempt in 1..=ATTEMPTS {
            let sets = self.read(client, &names).await?;
            let changes = diff(&sets, wanted, ours);
            if changes.is_empty() {
                return Ok(!applied.is_empty());
            }
            let (added, deleted) = changes.iter().fold((0, 0), |(a, d), change| {
                (a + change.add.len(), d + change.delete.len())
            });
            if dry_run {
                tracing::info!(added, deleted, "would send UPDATE");
                return Ok(true);
            }
            let adding = additions(&changes);
            if !adding.is_subset(owned) {
                owned.extend(adding);
                self.save_published(owned.clone())?;
            }
            let messages =
                pack(changes).map_err(|name| ZoneError::SetTooLarge { name: name.fqdn() })?;
            let count = messages.len();
            match self.send_all(client, messages, applied).await {
                Ok(()) => {
                    tracing::info!(messages = count, added, deleted, "zone updated");
                    return Ok(true);
                }
                Err(UpdateError::Changed { code, .. }) => {
                    tracing::info!(attempt, %code, "the zone changed since it was read: reading it again");
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(ZoneError::Contended {
            zone: self.zone.to_string(),
            server: self.target.server,
            attempts: ATTEMPTS,
            undo: String::new(),
        })
    }

    /// Sends the messages in order; each one the primary takes goes into `applied`.
    async fn send_all(
        &self,
        client: &mut UpdateClient,
        messages: Vec<Vec<SetChange>>,
        applied: &mut Vec<SetChange>,
    ) -> Result<(), UpdateError> {
        for (index, pieces) in messages.into_iter().enumerate() {
            if index > 0 {
                crash_point!("update.between_messages");
            }
            client.update(self.ttl, &pieces).await?;
            applied.extend(pieces);
        }
        Ok(())
    }

    /// Undoes `applied`, newest first; `Err` says why it could not all be undone.
    async fn undo(
        &self,
        client: &mut UpdateClient,
        applied: &[SetChange],
    ) -> Result<(), ZoneError> {
        let inverse: Vec<SetChange> = applied.iter().rev().map(SetChange::inverse).collect();
        let messages =
            pack(inverse).map_err(|name| ZoneError::SetTooLarge { name: name.fqdn() })?;
        let mut ignored = Vec::new();
        Ok(self.send_all(client, messages, &mut ignored).await?)
    }
}

impl ZoneWriter for UpdateWriter<'_> {
    fn home(&self) -> Option<&Home> {
        self.home.as_ref()
    }

    fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The primary is known by its address (`update.server`), not by name: the server that
    /// takes the UPDATE serves the new serial first, so among the servers found from NS
    /// records the records are checked there when it is one of them.
    fn primary(&self) -> Primary<'_> {
        Primary::At(self.target.server)
    }

    /// The operator's values and other clients' at fleetcert's names stay.
    fn set_check(&self) -> SetCheck {
        SetCheck::Contains
    }

    async fn write(
        &mut self,
        records: &BTreeSet<&TxtRecord>,
        _served: &[(SocketAddr, Served)],
    ) -> Result<Written, ZoneError> {
        let dry_run = self.dry_run;
        let before = self.load_published()?;
        let wanted = values(records.iter().copied());
        // Names to read: every wanted one, and every one holding a value of ours. Only values
        // of `before` that are no longer wanted are ever deleted (`diff`).
        let ours = values(records.iter().copied().chain(&before));
        let mut client = self.connect().await?;
        let mut owned = before.clone();
        let mut applied = Vec::new();
        let changed = match self
            .converge(
                &mut client,
                &wanted,
                &ours,
                dry_run,
                &mut applied,
                &mut owned,
            )
            .await
        {
            Ok(changed) => changed,
            Err(err) => {
                return Err(self.fail(&mut client, &applied, err, before, &owned).await);
            }
        };
        let serial = client.serial().await?;
        // Ours now: what we added or had, and still want; the rest was deleted or was gone.
        let now: BTreeSet<TxtRecord> = owned
            .iter()
            .filter(|record| records.contains(record))
            .cloned()
            .collect();
        if !dry_run && now != owned {
            self.save_published(now)?;
        }
        if !changed {
            tracing::info!(serial, "records unchanged: no UPDATE sent");
        }
        Ok(Written { changed, serial })
    }
}

impl UpdateWriter<'_> {
    /// After a failure: undo what the primary took, and narrow the published list back when
    /// the zone is as it was. Returns the error to report.
    async fn fail(
        &self,
        client: &mut UpdateClient,
        applied: &[SetChange],
        err: ZoneError,
        before: BTreeSet<TxtRecord>,
        widened: &BTreeSet<TxtRecord>,
    ) -> ZoneError {
        let undone = if applied.is_empty() {
            Ok(())
        } else {
            tracing::info!(
                changes = applied.len(),
                "undoing the messages the primary took"
            );
            self.undo(client, applied).await
        };
        let note = match &undone {
            Ok(()) => String::new(),
            Err(why) => {
                tracing::warn!(reason = %why, "cannot put the zone back as it was; the next publish finishes the change");
                format!(" (except that putting it back failed: {why})")
            }
        };
        // Only a zone known to be as before may forget the values on their way in.
        if undone.is_ok()
            && before != *widened
            && let Err(save) = self.save_published(before)
        {
            tracing::warn!(error = %save, "cannot narrow the list of published values back");
        }
        match err {
            ZoneError::Contended {
                zone,
                server,
                attempts,
                ..
            } => ZoneError::Contended {
                zone,
                server,
                attempts,
                undo: note,
            },
            other => {
                if !note.is_empty() {
                    tracing::warn!("{}", note.trim());
                }
                other
            }
        }
    }
}

/// The records `changes` add: the values fleetcert is about to own.
fn additions(changes: &[SetChange]) -> BTreeSet<TxtRecord> {
    changes
        .iter()
        .flat_map(|change| {
            change.add.iter().filter_map(|txt| {
                let value = TxtValue::try_from(single(txt)?.to_owned()).ok()?;
                Some(TxtRecord {
                    name: change.name.clone(),
                    value,
                })
            })
        })
        .collect()
}

/// The one string of a TXT record that fleetcert could have written; `None` for anything
/// else (several strings, not UTF-8), which is never fleetcert's.
fn single(txt: &TXT) -> Option<&str> {
    match &*txt.txt_data {
        [only] => std::str::from_utf8(only).ok(),
        _ => None,
    }
}

/// Per name of `ours`: the values of `wanted` missing from the zone, and the values of
/// `ours` the zone holds that `wanted` no longer has.
fn diff(
    sets: &BTreeMap<DnsName, Vec<TXT>>,
    wanted: &Values<'_>,
    ours: &Values<'_>,
) -> Vec<SetChange> {
    let none = BTreeSet::new();
    let mut changes = Vec::new();
    for (&name, our_values) in ours {
        let current = sets.get(name).cloned().unwrap_or_default();
        let want = wanted.get(name).unwrap_or(&none);
        let present: BTreeSet<&str> = current.iter().filter_map(single).collect();
        let add: Vec<TXT> = want
            .difference(&present)
            .map(|value| TXT::new(vec![(*value).to_owned()]))
            .collect();
        let delete: Vec<TXT> = current
            .iter()
            .filter(|txt| single(txt).is_some_and(|v| our_values.contains(v) && !want.contains(v)))
            .cloned()
            .collect();
        if !add.is_empty() || !delete.is_empty() {
            changes.push(SetChange {
                name: name.clone(),
                before: current,
                add,
                delete,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::tests::value;

    fn record(name: &str, v: &str) -> TxtRecord {
        TxtRecord {
            name: DnsName::parse(name).expect("name"),
            value: value(v),
        }
    }

    #[test]
    fn only_our_values_change_and_foreign_ones_stay() {
        let old = "o".repeat(43);
        let new = "n".repeat(43);
        let foreign = "f".repeat(43);
        let wanted_records = [record("a.acme.test", &new)];
        let before = [record("a.acme.test", &old), record("gone.acme.test", &old)];
        let wanted = values(wanted_records.iter());
        let ours = values(wanted_records.iter().chain(&before));
        let txt = |v: &str| TXT::new(vec![v.to_owned()]);
        let mut sets = BTreeMap::new();
        let a = DnsName::parse("a.acme.test").expect("name");
        let gone = DnsName::parse("gone.acme.test").expect("name");
        sets.insert(
            a.clone(),
            vec![txt(&old), txt(&foreign), txt("v=spf1 -all")],
        );
        sets.insert(gone.clone(), vec![txt(&old)]);
        let changes = diff(&sets, &wanted, &ours);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].name, a);
        assert_eq!(changes[0].add, vec![txt(&new)]);
        assert_eq!(changes[0].delete, vec![txt(&old)]);
        assert_eq!(
            changes[0].before.len(),
            3,
            "the prerequisite is the whole set"
        );
        assert_eq!(changes[1].name, gone);
        assert!(changes[1].add.is_empty());
        // Applied, nothing is left to do.
        for change in &changes {
            sets.insert(change.name.clone(), change.after());
        }
        assert!(diff(&sets, &wanted, &ours).is_empty());
        assert!(sets[&a].contains(&txt(&foreign)) && sets[&a].contains(&txt("v=spf1 -all")));
    }
}
