//! What the VMM's memory use is at the VM's end, read from `/proc/self/status` and
//! `/proc/self/smaps`: the peak resident set (`VmHWM`), the resident set, and the part of
//! it that is guest memory (the pages the guest touched), so that the VMM's own overhead
//! can be told apart from the guest's RAM. The resident figures are the sums of smaps'
//! `Rss:` lines, which the kernel counts by walking the page tables; `VmRSS` and `VmHWM`
//! come from counters that 6.1 updates lazily, per thread (up to 64 page faults late), so
//! a VMM that touched few pages read `VmHWM: 4 kB`. The peak is at least the resident set.

/// The figures, in kB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    pub peak_rss_kib: u64,
    pub rss_kib: u64,
    /// Resident pages of the guest's memory mappings.
    pub guest_kib: u64,
}

impl MemoryUse {
    /// The resident set that is not guest memory: the VMM's own overhead.
    pub fn vmm_kib(&self) -> u64 {
        self.rss_kib.saturating_sub(self.guest_kib)
    }
}

/// A `kB` field (`VmHWM:`, `Rss:`) of a `/proc` text.
fn field_kib(line: &str, name: &str) -> Option<u64> {
    line.strip_prefix(name)?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The figures from the texts of `/proc/self/status` and `/proc/self/smaps`; `guest` holds
/// the host address ranges (start, length) of guest memory.
pub fn parse(status: &str, smaps: &str, guest: &[(u64, u64)]) -> Option<MemoryUse> {
    let hwm_kib = status.lines().find_map(|l| field_kib(l, "VmHWM:"))?;
    let mut rss_kib = 0;
    let mut guest_kib = 0;
    let mut in_guest = false;
    for line in smaps.lines() {
        let range = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
            .and_then(|(s, e)| Some((u64::from_str_radix(s, 16).ok()?, u64::from_str_radix(e, 16).ok()?)));
        if let Some((start, end)) = range.filter(|_| !line.ends_with(" kB")) {
            in_guest = guest.iter().any(|&(g, len)| start >= g && end <= g + len);
        } else if let Some(kib) = field_kib(line, "Rss:") {
            rss_kib += kib;
            if in_guest {
                guest_kib += kib;
            }
        }
    }
    Some(MemoryUse {
        peak_rss_kib: hwm_kib.max(rss_kib),
        rss_kib,
        guest_kib,
    })
}

/// The figures of this process now.
pub fn now(guest: &[(u64, u64)]) -> Option<MemoryUse> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    parse(&status, &smaps, guest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tramkey-vmm\nVmPeak:\t  300000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    9000 kB\n";
    const SMAPS: &str = "\
7f0000000000-7f0010000000 rw-p 00000000 00:00 0 
Size:             262144 kB
Rss:                8000 kB
7f0010000000-7f0010001000 r--p 00000000 08:01 42   /bin/ramkey-vmm
Size:                  4 kB
Rss:                   4 kB
";

    #[test]
    fn guest_memory_is_told_apart_from_the_vmm_s_own() {
        let guest = [(0x7f00_0000_0000, 256 << 20)];
        let used = parse(STATUS, SMAPS, &guest).unwrap();
        assert_eq!(
            used,
            MemoryUse {
                peak_rss_kib: 9876,
                rss_kib: 8004,
                guest_kib: 8000
            }
        );
        assert_eq!(used.vmm_kib(), 4);
        assert_eq!(parse(STATUS, SMAPS, &[]).unwrap().guest_kib, 0);
        assert_eq!(parse("Name: x\n", SMAPS, &guest), None);
        // A lagging VmHWM is raised to the resident set.
        let lagging = parse("VmHWM:\t4 kB\n", SMAPS, &guest).unwrap();
        assert_eq!(lagging.peak_rss_kib, 8004);
    }

    #[test]
    fn this_process_can_be_read() {
        let used = now(&[]).unwrap();
        assert!(used.peak_rss_kib >= used.rss_kib && used.rss_kib > 0);
    }
}
