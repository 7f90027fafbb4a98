//! This host's name: what names a replica (its audit trail's file, its database
//! connections, the claims it takes) when the config does not. On Kubernetes it is the
//! pod's name, unique among the replicas.

/// The host's name, if one can be read and is plain (letters, digits, `-`, `_`, `.`):
/// `HOSTNAME`, else the kernel's, else `/etc/hostname`.
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_is_found_here_and_it_is_plain() {
        let name = super::host_name().expect("this machine has a host name");
        assert!(!name.is_empty() && !name.contains('/'), "{name}");
    }
}
