//! The CMOS RTC (MC146818) at ports 0x70/0x71: the host's UTC time in BCD, no update in
//! progress, and 128 bytes of CMOS RAM. Without it the guest's `rtc_cmos` driver reads
//! 0xFF ("update in progress") and waits seconds before giving up; with it the guest has a
//! hardware clock (`hwclock` works), though its wall time comes from kvm-clock anyway.

use std::time::{SystemTime, UNIX_EPOCH};

use super::BusDevice;

/// The index and data ports.
pub const CMOS_PORT: u64 = 0x70;
pub const CMOS_PORTS: u64 = 2;

const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;
/// Register A: 32.768 kHz time base, 1024 Hz rate, update not in progress.
const REG_A_VALUE: u8 = 0x26;
/// Register B: 24-hour mode, BCD, no interrupts.
const REG_B_VALUE: u8 = 0x02;
/// Register D: the battery is good (the time is valid).
const REG_D_VALUE: u8 = 0x80;

/// The controller: the selected register and the RAM.
#[derive(Debug)]
pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    /// Seconds since the epoch, from the host clock (a parameter for tests).
    now: fn() -> u64,
}

fn host_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Default for Cmos {
    fn default() -> Cmos {
        Cmos::with_clock(host_now)
    }
}

fn bcd(value: u64) -> u8 {
    (((value / 10 % 10) << 4) | (value % 10)) as u8
}

/// The civil date (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe as i64 + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Cmos {
    pub fn with_clock(now: fn() -> u64) -> Cmos {
        Cmos {
            index: 0,
            ram: [0; 128],
            now,
        }
    }

    fn register(&self, index: u8) -> u8 {
        let secs = (self.now)();
        let days = (secs / 86_400) as i64;
        let (year, month, day) = civil_from_days(days);
        let of_day = secs % 86_400;
        match index {
            0x00 => bcd(of_day % 60),
            0x02 => bcd(of_day / 60 % 60),
            0x04 => bcd(of_day / 3600),
            // 1 = Sunday; 1970-01-01 was a Thursday.
            0x06 => bcd(((days + 4).rem_euclid(7) + 1) as u64),
            0x07 => bcd(day),
            0x08 => bcd(month),
            0x09 => bcd(year.rem_euclid(100) as u64),
            CENTURY => bcd((year / 100) as u64),
            REG_A => REG_A_VALUE,
            REG_B => REG_B_VALUE,
            REG_C => 0,
            REG_D => REG_D_VALUE,
            other => self.ram[usize::from(other)],
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let byte = if offset == 1 { self.register(self.index) } else { 0xff };
        data.fill(byte);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&byte) = data.first() else { return };
        if offset == 0 {
            // Bit 7 masks the NMI; the rest selects the register.
            self.index = byte & 0x7f;
        } else {
            self.ram[usize::from(self.index)] = byte;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05 14:53:07 UTC, a Saturday.
    fn fixed() -> u64 {
        1_796_482_387
    }

    fn read(cmos: &mut Cmos, index: u8) -> u8 {
        cmos.write(0, &[index | 0x80]);
        let mut byte = [0u8];
        cmos.read(1, &mut byte);
        byte[0]
    }

    #[test]
    fn the_clock_reads_in_bcd_and_is_never_updating() {
        let mut cmos = Cmos::with_clock(fixed);
        let date: Vec<u8> = [0x32, 0x09, 0x08, 0x07, 0x04, 0x02, 0x00, 0x06]
            .iter()
            .map(|&r| read(&mut cmos, r))
            .collect();
        assert_eq!(date, [0x20, 0x26, 0x12, 0x05, 0x14, 0x53, 0x07, 0x07]);
        assert_eq!(read(&mut cmos, REG_A) & 0x80, 0, "no update in progress");
        assert_eq!(read(&mut cmos, REG_D), 0x80);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn cmos_ram_keeps_what_is_written() {
        let mut cmos = Cmos::default();
        cmos.write(0, &[0x40]);
        cmos.write(1, &[0xab]);
        assert_eq!(read(&mut cmos, 0x40), 0xab);
        let mut index_port = [0u8];
        cmos.read(0, &mut index_port);
        assert_eq!(index_port[0], 0xff);
    }
}
