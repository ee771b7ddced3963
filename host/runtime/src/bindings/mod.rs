//! The `nexo:connector` contract versions this host serves, one bindings
//! module each — every `bindgen!` of the host lives under this module.
//!
//! `wit/<version>/` holds each released version side by side, never edited
//! once released. Each served version has a module here (`v1_0` for
//! `wit/1.0.0/`) that generates its bindings and converts its generated
//! types into the engine's own ([`crate::plugin::types`]) at the edge: the
//! engine never sees a generated type, so a new version only adds a module
//! and an entry in [`SERVED`].

pub mod v1_0;

/// The bindings of the newest served version, for code that must talk to a
/// raw instance (the runtime benchmark); the engine goes through
/// [`crate::plugin`] instead.
pub use v1_0::{connector, mapper};

/// The `nexo:connector` package versions this host serves, oldest first,
/// each with a folder `wit/<version>/` and a bindings module here (whose
/// `VERSION` is the entry). The one list of the host's contract versions: the
/// load, pack and review checks and their messages derive from it.
pub const SERVED: &[&str] = &[v1_0::VERSION];

/// `major.minor` of a version string; `None` when it is not `X.Y.Z`.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?;
    // A pre-release or build tail (`1.0.0-rc.1`) is not a released
    // contract: only plain `X.Y.Z` is served.
    patch.parse::<u64>().ok()?;
    parts.next().is_none().then_some((major, minor))
}

/// Whether this host serves a component built against `version`: the
/// same major as a served version, at that version's minor or below (a
/// component built against a newer minor may import what this host lacks).
pub fn serves(version: &str) -> bool {
    let Some((major, minor)) = major_minor(version) else {
        return false;
    };
    SERVED
        .iter()
        .filter_map(|v| major_minor(v))
        .any(|(m, n)| m == major && minor <= n)
}

/// What this host serves, for messages: `1.x` (`1.x, 2.x` with two majors),
/// the newest served minor of each major given in full.
pub fn served_text() -> String {
    let mut majors: Vec<(u64, &str)> = Vec::new();
    for v in SERVED {
        if let Some((major, _)) = major_minor(v) {
            match majors.iter_mut().find(|(m, _)| *m == major) {
                Some(entry) => entry.1 = v,
                None => majors.push((major, v)),
            }
        }
    }
    majors
        .iter()
        .map(|(major, newest)| format!("{major}.x (up to {newest})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_version_is_plain_semver_oldest_first() {
        let parsed: Vec<_> = SERVED.iter().map(|v| major_minor(v)).collect();
        assert!(parsed.iter().all(Option::is_some), "{SERVED:?}");
        assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{SERVED:?}");
    }

    #[test]
    fn a_served_major_is_served_up_to_its_newest_minor_and_no_further() {
        assert!(serves("1.0.0"));
        assert!(serves("1.0.3"));
        assert!(!serves("1.1.0"), "no 1.1 folder yet");
        assert!(!serves("2.0.0"));
        assert!(!serves("0.9.0"));
        assert!(!serves("1.0.0-rc.1"));
        assert!(!serves("1.0"));
        assert!(!serves("one"));
    }

    #[test]
    fn the_served_text_names_each_major_and_its_newest_version() {
        assert_eq!(served_text(), "1.x (up to 1.0.0)");
    }
}
