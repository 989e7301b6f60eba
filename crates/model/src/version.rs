//! API versions: which `vNN.N` are served, and parsing of the URL segment.

/// Oldest supported API version (older ones answer 410 GONE).
pub const MIN_VERSION: u32 = 31;
/// Newest supported API version (also what `latest` means).
pub const MAX_VERSION: u32 = 66;

/// A served API version such as 59.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion(pub u32);

/// Why a version segment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Not of the form `vNN.N` / `NN.N` / `latest`.
    Malformed,
    /// Retired (older than [`MIN_VERSION`]).
    Retired,
    /// Newer than [`MAX_VERSION`].
    Unknown,
}

impl ApiVersion {
    /// The newest version.
    pub const LATEST: ApiVersion = ApiVersion(MAX_VERSION);

    /// Parses `v59.0` (REST), `59.0` (SOAP, Bulk 1.0, CometD) or `latest`.
    pub fn parse(segment: &str) -> Result<ApiVersion, VersionError> {
        if segment.eq_ignore_ascii_case("latest") {
            return Ok(ApiVersion::LATEST);
        }
        let s = segment.strip_prefix('v').unwrap_or(segment);
        let (major, minor) = s.split_once('.').ok_or(VersionError::Malformed)?;
        if minor != "0"
            || major.is_empty()
            || major.len() > 3
            || !major.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(VersionError::Malformed);
        }
        let n: u32 = major.parse().map_err(|_| VersionError::Malformed)?;
        if n < MIN_VERSION {
            Err(VersionError::Retired)
        } else if n > MAX_VERSION {
            Err(VersionError::Unknown)
        } else {
            Ok(ApiVersion(n))
        }
    }

    /// `59.0`.
    pub fn number(&self) -> String {
        format!("{}.0", self.0)
    }

    /// `v59.0`.
    pub fn segment(&self) -> String {
        format!("v{}.0", self.0)
    }

    /// Every served version, oldest first.
    pub fn all() -> impl Iterator<Item = ApiVersion> {
        (MIN_VERSION..=MAX_VERSION).map(ApiVersion)
    }

    /// The release label of this version (`Winter '24` for 59.0).
    pub fn label(&self) -> String {
        // Three releases a year; 59.0 was Winter '24, so Winter of year Y is version 3*(Y-24)+59.
        let offset = self.0 as i64 - 59;
        let year = 24 + offset.div_euclid(3);
        let season = ["Winter", "Spring", "Summer"][offset.rem_euclid(3) as usize];
        format!("{season} '{:02}", year.rem_euclid(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_labels() {
        assert_eq!(ApiVersion::parse("v59.0"), Ok(ApiVersion(59)));
        assert_eq!(ApiVersion::parse("59.0"), Ok(ApiVersion(59)));
        assert_eq!(ApiVersion::parse("latest"), Ok(ApiVersion::LATEST));
        assert_eq!(ApiVersion::parse("v20.0"), Err(VersionError::Retired));
        assert_eq!(ApiVersion::parse("v99.0"), Err(VersionError::Unknown));
        assert_eq!(ApiVersion::parse("v59"), Err(VersionError::Malformed));
        assert_eq!(ApiVersion::parse("v59.1"), Err(VersionError::Malformed));
        assert_eq!(ApiVersion(59).label(), "Winter '24");
        assert_eq!(ApiVersion(60).label(), "Spring '24");
        assert_eq!(ApiVersion(61).label(), "Summer '24");
        assert_eq!(ApiVersion(31).label(), "Summer '14");
    }
}
