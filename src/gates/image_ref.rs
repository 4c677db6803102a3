//! Container image references as a registry, Docker and the kubelet accept them:
//! `[host[:port]/]path[:tag][@algorithm:hex]`.
//!
//! * `host`: DNS labels (letters, digits, `-` inside) joined by `.`, or `localhost`,
//!   with an optional port (1..=65535). The first component counts as a host only if
//!   more follow and it has a `.` or a `:`, is `localhost`, or has an upper-case letter
//!   (as Docker decides).
//! * `path`: components of lower-case letters and digits, separated inside by `.`,
//!   `_`, `__` or runs of `-`, joined by `/`. With the host, at most 255 characters.
//! * `tag`: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
//! * digest: `sha256:` and 64, or `sha512:` and 128, lower-case hex digits.
//!
//! No whitespace, control characters or anything else: a reference that passes is
//! safe to log and to write into a pod template as is.

use std::fmt;

/// The longest name (host and path, without tag or digest).
pub const IMAGE_NAME_MAX: usize = 255;
/// The longest tag.
pub const IMAGE_TAG_MAX: usize = 128;

/// What a valid reference looks like, for error messages.
pub const IMAGE_REF_FORMAT: &str = "[registry[:port]/]path[:tag][@sha256:<64 hex digits>], \
    path components of lower-case letters and digits separated by . _ or -, \
    a tag of letters, digits, _ . - (up to 128, not starting with . or -)";

/// A parsed, valid image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `host` or `host:port`, when given.
    pub registry: Option<String>,
    /// The repository path below the registry, e.g. `library/nginx`.
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:<hex>` or `sha512:<hex>`.
    pub digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("it is empty")]
    Empty,
    #[error("it holds whitespace or a control character")]
    Whitespace,
    #[error("the name is longer than {IMAGE_NAME_MAX} characters")]
    NameTooLong,
    #[error("the registry {0:?} is not a host name with an optional port")]
    Registry(String),
    #[error("the path component {0:?} is not lower-case letters and digits separated by . _ or -")]
    Path(String),
    #[error("the tag {0:?} is not letters, digits, _ . - (up to 128, not starting with . or -)")]
    Tag(String),
    #[error("the digest {0:?} is not sha256:<64 hex digits> (or sha512:<128>)")]
    Digest(String),
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_image_ref(s)
    }
}

/// Parse `s` as an image reference (see the module documentation).
pub fn parse_image_ref(s: &str) -> Result<ImageRef, ImageRefError> {
    if s.is_empty() {
        return Err(ImageRefError::Empty);
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ImageRefError::Whitespace);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, d)) => {
            if !valid_digest(d) {
                return Err(ImageRefError::Digest(d.to_string()));
            }
            (rest, Some(d.to_string()))
        }
        None => (s, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            let tag = &rest[at + 1..];
            if !valid_tag(tag) {
                return Err(ImageRefError::Tag(tag.to_string()));
            }
            (&rest[..at], Some(tag.to_string()))
        }
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(ImageRefError::Empty);
    }
    if name.len() > IMAGE_NAME_MAX {
        return Err(ImageRefError::NameTooLong);
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, path)) if looks_like_host(first) => {
            if !valid_host(first) {
                return Err(ImageRefError::Registry(first.to_string()));
            }
            (Some(first.to_string()), path)
        }
        _ => (None, name),
    };
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(ImageRefError::Path(component.to_string()));
        }
    }
    Ok(ImageRef {
        registry,
        path: path.to_string(),
        tag,
        digest,
    })
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// `label(.label)*[:port]`, a label being letters and digits with `-` inside.
fn valid_host(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    host.split('.').all(label_ok) && port_ok
}

/// `[a-z0-9]+(sep[a-z0-9]+)*` with `sep` one of `.`, `_`, `__`, or `-`+.
fn valid_path_component(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run between two alphanumerics.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let ok = match &s[start..i] {
            "." | "_" | "__" => true,
            sep => sep.bytes().all(|b| b == b'-'),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= IMAGE_TAG_MAX
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

fn valid_digest(s: &str) -> bool {
    let hex_of = |h: &str, n: usize| {
        h.len() == n
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match s.split_once(':') {
        Some(("sha256", h)) => hex_of(h, 64),
        Some(("sha512", h)) => hex_of(h, 128),
        _ => false,
    }
}

#[cfg(test)]
#[path = "image_ref_tests.rs"]
mod tests;
