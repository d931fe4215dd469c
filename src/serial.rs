//! SOA serials: RFC 1982 comparison and the choice of the next serial.
//!
//! A serial is the Unix time of the publish when that is greater than every serial seen so far
//! (the zone file's and the one the servers serve), and the greatest of those plus one
//! otherwise. So several publishes within one second, a clock that went backwards, or a zone
//! that used date-based serials (2026112201) before all still give a strictly greater serial.

use std::cmp::Ordering;

/// Half the serial space: RFC 1982 section 3.2 compares within this distance.
const HALF: u32 = 1 << 31;

/// Compares two serials by RFC 1982 section 3.2; `None` when they are exactly 2^31 apart,
/// which the RFC leaves undefined.
pub(crate) fn compare(a: u32, b: u32) -> Option<Ordering> {
    if a == b {
        return Some(Ordering::Equal);
    }
    match b.wrapping_sub(a) {
        HALF => None,
        distance if distance < HALF => Some(Ordering::Less),
        _ => Some(Ordering::Greater),
    }
}

/// Whether a server that serves `served` has caught up with `wanted`.
pub(crate) fn has_reached(served: u32, wanted: u32) -> bool {
    matches!(
        compare(served, wanted),
        Some(Ordering::Equal | Ordering::Greater)
    )
}

/// The greatest of `serials` in RFC 1982 order; a serial wins ties that the RFC leaves undefined
/// only when it came first, which keeps the result stable.
fn greatest(serials: impl IntoIterator<Item = u32>) -> Option<u32> {
    serials.into_iter().fold(None, |best, serial| match best {
        None => Some(serial),
        Some(best) if compare(serial, best) == Some(Ordering::Greater) => Some(serial),
        Some(best) => Some(best),
    })
}

/// The serial for a new version of the zone: strictly greater (RFC 1982) than every serial in
/// `seen`, preferably `now` (Unix seconds, truncated to 32 bits).
pub(crate) fn next(seen: impl IntoIterator<Item = u32>, now: u32) -> u32 {
    let Some(current) = greatest(seen) else {
        return now;
    };
    // `now` is only usable when it lies less than 2^31 ahead; anything else would read as
    // older to a secondary, and RFC 1982 section 3.1 forbids larger increments anyway.
    if compare(now, current) == Some(Ordering::Greater) {
        now
    } else {
        // Serial 0 is legal but some tools treat it as "unset": skip it on wrap-around.
        match current.wrapping_add(1) {
            0 => 1,
            serial => serial,
        }
    }
}

/// Reads the serial from a zone file's SOA record, tolerating the multi-line form with
/// parentheses and comments that hand-written zone files use. `None` when there is no SOA.
pub(crate) fn from_zone_text(text: &str) -> Option<u32> {
    let mut tokens = text
        .lines()
        .map(|line| line.split(';').next().unwrap_or(""))
        .flat_map(|line| line.split(|c: char| c.is_whitespace() || c == '(' || c == ')'))
        .filter(|token| !token.is_empty());
    tokens.find(|token| token.eq_ignore_ascii_case("SOA"))?;
    // MNAME and RNAME, then the serial.
    tokens.nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_follows_rfc_1982_with_wrap_around() {
        assert_eq!(compare(1, 2), Some(Ordering::Less));
        assert_eq!(compare(2, 1), Some(Ordering::Greater));
        assert_eq!(compare(u32::MAX, 0), Some(Ordering::Less));
        assert_eq!(compare(0, u32::MAX), Some(Ordering::Greater));
        assert_eq!(compare(u32::MAX - 5, 10), Some(Ordering::Less));
        assert_eq!(compare(0, HALF), None);
        assert_eq!(compare(0, HALF - 1), Some(Ordering::Less));
        assert_eq!(compare(0, HALF + 1), Some(Ordering::Greater));
        assert!(has_reached(5, 5));
        assert!(has_reached(2, u32::MAX));
        assert!(!has_reached(u32::MAX, 2));
    }

    #[test]
    fn next_prefers_the_clock() {
        assert_eq!(next([1_700_000_000], 1_800_000_000), 1_800_000_000);
        assert_eq!(next([], 1_800_000_000), 1_800_000_000);
    }

    #[test]
    fn next_increments_within_one_second_and_when_the_clock_went_back() {
        let now = 1_800_000_000;
        let first = next([now - 10], now);
        let second = next([first], now);
        let third = next([second], now);
        assert!(first < second && second < third, "{first} {second} {third}");
        assert_eq!(next([now + 100], now), now + 101);
    }

    #[test]
    fn next_takes_the_greatest_of_file_and_served() {
        assert_eq!(
            next([1_900_000_000, 1_900_000_005], 1_800_000_000),
            1_900_000_006
        );
        // A date-based serial lies ahead of the Unix time: keep counting from it.
        assert_eq!(next([2_026_112_201], 1_800_000_000), 2_026_112_202);
    }

    #[test]
    fn next_wraps_around_and_skips_zero() {
        assert_eq!(next([u32::MAX], 5), 5);
        assert_eq!(next([u32::MAX], u32::MAX), 1);
        // The clock lies exactly 2^31 ahead: undefined by the RFC, so increment instead.
        assert_eq!(next([7], 7 + HALF), 8);
        // Far "ahead" by more than 2^31 reads as behind: increment.
        assert_eq!(next([7], 7 + HALF + 1), 8);
    }

    #[test]
    fn greatest_uses_serial_order() {
        assert_eq!(greatest([u32::MAX, 3]), Some(3));
        assert_eq!(greatest([3, 10, 4]), Some(10));
        assert_eq!(greatest([]), None);
    }

    #[test]
    fn serial_is_read_from_one_line_and_multi_line_soa() {
        let one = "$TTL 60\n@ IN SOA ns1.a. host.a. ( 42 3600 600 864000 60 )\n";
        assert_eq!(from_zone_text(one), Some(42));
        let multi = "$TTL 60\n@ IN SOA ns1.a. host.a. (\n  2026112201 ; serial\n  3600 )\n";
        assert_eq!(from_zone_text(multi), Some(2_026_112_201));
        assert_eq!(from_zone_text("@ IN NS ns1.a.\n"), None);
    }
}
