//! A zone bound to its personality and its version floor, at boot ([`super::plan`]) and in
//! `ramkeyctl personality swap`: a zone runs the personality it last
//! came up on (the manifest name in its last good record, `good.json`) and never an image
//! older than the highest version it has come up on (`highest-version` in its state
//! directory) unless it is told to. Both records are on the pool: a diskless zone starts
//! afresh at every boot and has nothing to compare with.

use ramkey_image::requirements::PlatformVersion;

use super::{ZoneError, ZoneSpec};

/// Where a zone's highest image version that came up is recorded (in its state directory).
pub const HIGHEST: &str = "highest-version";

/// The highest version the zone came up on (recorded with a pool only).
pub fn highest(spec: &ZoneSpec) -> Option<String> {
    let record = spec.persistent.then(|| spec.state_dir.join(HIGHEST))?;
    std::fs::read_to_string(record).ok().map(|v| v.trim().to_string())
}

/// The highest version `spec`'s zone came up on, when `version` is older than it (a
/// downgrade).
pub fn floor_above(spec: &ZoneSpec, version: &str) -> Option<String> {
    let highest = highest(spec)?;
    older(version, &highest).then_some(highest)
}

/// Whether `version` is older than `than`; a version that does not parse is never older
/// (nor newer: it never raises the record).
fn older(version: &str, than: &str) -> bool {
    matches!((parse(version), parse(than)), (Some(a), Some(b)) if a < b)
}

fn parse(version: &str) -> Option<PlatformVersion> {
    version.parse().ok()
}

/// Records `spec`'s version as the highest its zone has come up on, when it is higher than
/// the record (or there is no valid record yet).
pub fn raise_floor(spec: &ZoneSpec) -> Result<(), ZoneError> {
    let higher = match (parse(&spec.version), highest(spec).as_deref().and_then(parse)) {
        (Some(new), Some(high)) => new > high,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let file = spec.state_dir.join(HIGHEST);
    if higher && spec.persistent {
        std::fs::write(&file, format!("{}\n", spec.version)).map_err(ZoneError::file(&file))?;
    }
    Ok(())
}

/// Why the image a zone's spec names may not run in it ([`Refusal::explain`] says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The image is another personality than the one the zone last came up on.
    Foreign {
        /// The personality the zone last came up on.
        ran: String,
        /// Its version.
        ran_version: String,
    },
    /// The image is older than the highest version the zone came up on.
    Downgrade {
        /// That version.
        highest: String,
    },
}

impl Refusal {
    /// What is refused in `spec` (the spec checked), why, and what to do.
    pub fn explain(&self, spec: &ZoneSpec) -> String {
        let (zone, name, version) = (&spec.name, &spec.image_name, &spec.version);
        let (image, state_dir) = (spec.image.display(), spec.state_dir.display());
        match self {
            Self::Foreign { ran, ran_version } => format!(
                "{image} is image {name} {version}, and zone {zone} last came up on {ran} {ran_version} \
                 ({state_dir}/{GOOD}): a zone keeps its personality and its data. To run {name}, give it a \
                 [[personality]] of another name; or, if zone {zone}'s data should go, stop it (ramkeyctl \
                 personality stop {zone}) and remove {state_dir}, and the next boot starts zone {zone} afresh \
                 as {name}"
            ),
            Self::Downgrade { highest } => format!(
                "{image} is {name} {version}, older than {highest}, which zone {zone} has run \
                 ({state_dir}/{HIGHEST}): a downgrade. To run it anyway, set allow_downgrade = true in \
                 [[personality]] {zone} (ramkey config set personality.{zone}.allow_downgrade=true)"
            ),
        }
    }
}

/// The file name of a zone's last good record ([`ZoneSpec::good_record`]).
const GOOD: &str = "good.json";

/// Checks the image `spec` names against its zone's last good record `good` and highest
/// version: the image the zone last came up on always passes (a rollback or an allowed
/// downgrade stays where it was put); another personality never does; an older version
/// only with `allow_downgrade`.
pub fn check(spec: &ZoneSpec, good: Option<&ZoneSpec>, allow_downgrade: bool) -> Result<(), Refusal> {
    if let Some(good) = good {
        if same_image(good, spec) {
            return Ok(());
        }
        if good.image_name != spec.image_name {
            return Err(Refusal::Foreign {
                ran: good.image_name.clone(),
                ran_version: good.version.clone(),
            });
        }
    }
    match floor_above(spec, &spec.version) {
        Some(highest) if !allow_downgrade => Err(Refusal::Downgrade { highest }),
        _ => Ok(()),
    }
}

/// Whether `a` and `b` run the same image: name, version and payload (the payload alone
/// does not say it: a manifest re-signed with another version has the same payload).
fn same_image(a: &ZoneSpec, b: &ZoneSpec) -> bool {
    a.image_name == b.image_name && a.version == b.version && a.sha256 == b.sha256
}

/// The zone's last good record, if it has one that reads (one that does not is said on the
/// console: nothing binds the zone then).
pub fn last_good(spec: &ZoneSpec) -> Option<ZoneSpec> {
    let record = spec.good_record()?;
    match ZoneSpec::load(&record) {
        Ok(good) => Some(good),
        Err(e) if record.exists() => {
            crate::warn!(
                "zone {}: its last good record is unusable (nothing binds it, nothing to fall back to): {e}",
                spec.name
            );
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn spec(state_dir: &Path, name: &str, version: &str, sha256: &str) -> ZoneSpec {
        ZoneSpec {
            image: PathBuf::from(format!("/usbkey/personalities/{name}-{version}.rkimg")),
            image_name: name.into(),
            version: version.into(),
            sha256: sha256.into(),
            state_dir: state_dir.to_path_buf(),
            ..crate::zone::test_spec()
        }
    }

    #[test]
    fn another_personality_is_refused_naming_both_and_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let good = spec(dir.path(), "web", "1.0.0", "aa");
        let kv = spec(dir.path(), "kv", "1.0.0", "bb");
        let refused = check(&kv, Some(&good), true).unwrap_err();
        assert!(matches!(refused, Refusal::Foreign { .. }), "{refused:?}");
        let message = refused.explain(&kv);
        for part in [
            "/usbkey/personalities/kv-1.0.0.rkimg is image kv 1.0.0, and zone web last came up on web 1.0.0",
            &format!("({}/good.json)", dir.path().display()),
            "give it a [[personality]] of another name",
            &format!(
                "remove {}, and the next boot starts zone web afresh as kv",
                dir.path().display()
            ),
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        // Without a record there is nothing to bind to: a new zone takes any personality.
        assert_eq!(check(&kv, None, false), Ok(()));
    }

    #[test]
    fn an_older_version_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HIGHEST), "2.0.0\n").unwrap();
        let good = spec(dir.path(), "web", "2.0.0", "aa");
        let old = spec(dir.path(), "web", "1.0.0", "bb");
        let refused = check(&old, Some(&good), false).unwrap_err();
        assert!(matches!(refused, Refusal::Downgrade { .. }), "{refused:?}");
        let message = refused.explain(&old);
        for part in [
            "/usbkey/personalities/web-1.0.0.rkimg is web 1.0.0, older than 2.0.0, which zone web has run",
            &format!("({}/highest-version)", dir.path().display()),
            "set allow_downgrade = true in [[personality]] web",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        assert_eq!(check(&old, Some(&good), true), Ok(()));
        // The same payload under an older version is still a downgrade.
        let resigned = spec(dir.path(), "web", "1.0.0", "aa");
        assert!(check(&resigned, Some(&good), false).is_err());
        // The floor holds without a good record too; a newer or equal version passes.
        assert!(check(&old, None, false).is_err());
        assert_eq!(
            check(&spec(dir.path(), "web", "2.0.0", "cc"), Some(&good), false),
            Ok(())
        );
        assert_eq!(
            check(&spec(dir.path(), "web", "3.0.0", "cc"), Some(&good), false),
            Ok(())
        );
    }

    #[test]
    fn the_image_the_zone_last_came_up_on_always_passes() {
        // After a rollback (an allowed downgrade), the record is older than the floor.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HIGHEST), "2.0.0\n").unwrap();
        let good = spec(dir.path(), "web", "1.0.0", "aa");
        assert_eq!(check(&good, Some(&good), false), Ok(()));
    }

    #[test]
    fn diskless_zones_have_no_floor() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HIGHEST), "2.0.0\n").unwrap();
        let mut old = spec(dir.path(), "web", "1.0.0", "bb");
        old.persistent = false;
        assert_eq!(check(&old, None, false), Ok(()));
        raise_floor(&spec(dir.path(), "web", "3.0.0", "cc")).unwrap();
        assert_eq!(highest(&old), None);
    }

    #[test]
    fn the_floor_only_rises() {
        let dir = tempfile::tempdir().unwrap();
        let at = |version: &str| spec(dir.path(), "web", version, "aa");
        raise_floor(&at("1.2.0")).unwrap();
        assert_eq!(highest(&at("0")).as_deref(), Some("1.2.0"));
        raise_floor(&at("1.10.0")).unwrap();
        raise_floor(&at("1.9.0")).unwrap();
        raise_floor(&at("not-a-version")).unwrap();
        assert_eq!(highest(&at("0")).as_deref(), Some("1.10.0"));
        assert_eq!(floor_above(&at("0"), "1.9.9").as_deref(), Some("1.10.0"));
        assert_eq!(floor_above(&at("0"), "1.10.0"), None);
        // A version that does not parse is never called older.
        assert_eq!(floor_above(&at("0"), "latest"), None);
    }
}
