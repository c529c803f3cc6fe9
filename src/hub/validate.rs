//! Checks on every value that becomes part of a cache path or a URL before it is used: the
//! hub is untrusted, and a header such as `ETag: "../../x"` must not steer a write outside
//! the cache.

/// Why a value was refused, for [`super::HubError::UnsafeValue`].
pub type Refusal = &'static str;

/// Longest ETag accepted (a sha256 is 64 hex digits; hub ETags are shorter still).
const MAX_ETAG_CHARS: usize = 128;
/// Longest revision, file name or hub id part accepted.
const MAX_NAME_CHARS: usize = 255;

/// A commit id: exactly 40 lowercase hex digits (it names the snapshot folder).
pub fn commit(value: &str) -> Result<(), Refusal> {
    if value.len() == 40
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err("a commit must be 40 lowercase hex digits")
    }
}

/// The ETag as the cache names the blob: `W/` and quotes stripped, as huggingface_hub does.
pub fn normalize_etag(raw: &str) -> &str {
    let raw = raw.trim();
    raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"')
}

/// A normalized ETag (it names the blob file): letters, digits, `-`, `_` and `.` only, not
/// starting with a dot, at most 128 characters.
pub fn etag(value: &str) -> Result<(), Refusal> {
    if value.is_empty() || value.len() > MAX_ETAG_CHARS {
        return Err("an ETag must have 1 to 128 characters");
    }
    if value.starts_with('.') {
        return Err("an ETag must not start with a dot");
    }
    if !value.bytes().all(is_name_byte) {
        return Err("an ETag may hold only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// True when `value` is a sha256 in hex, as the hub's `X-Linked-Etag` is for LFS files.
pub fn is_sha256(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A repo-relative file name (`a.json`, `dir/b.safetensors`): relative, `/`-separated parts
/// of safe characters, none empty, `.` or `..`.
pub fn file_name(value: &str) -> Result<(), Refusal> {
    relative_path(value)
}

/// A revision (`main`, `refs/pr/1`, a commit): the same rules as a file name, since it names
/// the `refs/` file.
pub fn revision(value: &str) -> Result<(), Refusal> {
    relative_path(value)
}

fn relative_path(value: &str) -> Result<(), Refusal> {
    if value.is_empty() || value.len() > MAX_NAME_CHARS {
        return Err("must have 1 to 255 characters");
    }
    for part in value.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err("must not be absolute or hold an empty, '.' or '..' part");
        }
        if !part.bytes().all(is_name_byte) {
            return Err("may hold only letters, digits, '-', '_', '.' and '/'");
        }
    }
    Ok(())
}

/// A hub id part (`org` or `name` of `org/name`).
pub fn hub_id_part(value: &str) -> Result<(), Refusal> {
    if value.is_empty() || value.len() > MAX_NAME_CHARS {
        return Err("each part of a hub id must have 1 to 255 characters");
    }
    if value.starts_with(['.', '-']) || !value.bytes().all(is_name_byte) {
        return Err(
            "a hub id may hold only letters, digits, '-', '_' and '.', and a part must not start with '.' or '-'",
        );
    }
    Ok(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_40_lowercase_hex_digits() {
        assert!(commit("0123456789abcdef0123456789abcdef01234567").is_ok());
        for bad in [
            "../../x",
            "0123456789abcdef0123456789abcdef0123456",
            "0123456789ABCDEF0123456789ABCDEF01234567",
            "0123456789abcdef0123456789abcdef0123456/",
            "",
        ] {
            assert!(commit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn etags_cannot_leave_the_blobs_folder() {
        assert_eq!(normalize_etag("W/\"abc-1\""), "abc-1");
        assert!(etag(normalize_etag("\"etag-model.safetensors-10\"")).is_ok());
        assert!(etag(&"a".repeat(64)).is_ok());
        for bad in [
            "../../x",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "",
            "a b",
            "x\u{1b}]0;t",
        ] {
            assert!(etag(bad).is_err(), "{bad:?}");
        }
        assert!(etag(&"a".repeat(129)).is_err());
    }

    #[test]
    fn file_names_and_revisions_stay_relative() {
        for good in ["config.json", "dir/model-00001-of-00002.safetensors"] {
            assert!(file_name(good).is_ok(), "{good}");
        }
        assert!(revision("refs/pr/1").is_ok());
        for bad in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "a/../b",
            "a\\b",
            "",
            "a b",
        ] {
            assert!(file_name(bad).is_err(), "{bad:?}");
            assert!(revision(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sha256_is_64_hex_digits() {
        assert!(is_sha256(&"ab".repeat(32)));
        assert!(!is_sha256(&"ab".repeat(20)));
        assert!(!is_sha256(&"zz".repeat(32)));
    }

    #[test]
    fn hub_id_parts_are_plain_names() {
        assert!(hub_id_part("gpt-oss-20b").is_ok());
        for bad in ["", ".x", "-x", "a b", "a?b", "a%2F"] {
            assert!(hub_id_part(bad).is_err(), "{bad:?}");
        }
    }
}
