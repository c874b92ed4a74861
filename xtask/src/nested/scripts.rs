//! The shell scripts of the VM boot test's two guests: the outer `/init`, which sets up the
//! networks and runs the VMM, and the inner `/init`, which checks its devices and ends the
//! way its kernel command line says. `@NAME@` placeholders are filled in by
//! [`super::build`].

/// The inner guest's `/init`. It prints the marker with the kernel's own uptime and the CPUs
/// it found; with disks, their checks: `vda` is read-only (its first line and GET_ID serial
/// are printed, a write to it must fail — refused by the kernel for `VIRTIO_BLK_F_RO`, or by
/// the VMM with IOERR —, its sysfs `ro` flag is printed, and it is read whole, timed); `vdb`
/// gets the line in its first sector and 4 MiB at 1 MiB (timed), each flushed. With a NIC
/// it fetches the outer page (and with `BIG=1` 4 MiB, timed) and serves its own page. Then
/// `ENDING=reboot` reboots (the i8042 reset), `LINGER` seconds after it began serving; `ENDING=ctrl-alt-del` reads one console line,
/// prints it, and waits for Ctrl-Alt-Del, which the kernel turns into SIGINT for PID 1
/// (`ctrl-alt-del` set to 0), and powers off on it (ACPI S5). `OUTER`, `INNER`, `ENDING` and
/// `BIG` and `LINGER` come from the kernel command line: its unknown `NAME=value` words are init's
/// environment.
pub const INNER_INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
read up idle < /proc/uptime
n=0
while read -r key rest; do [ "$key" = processor ] && n=$((n + 1)); done < /proc/cpuinfo
echo "@MARKER@ $up, cpus $n"
cs() { read u i < /proc/uptime; echo "${u%.*}${u#*.}"; } # uptime in centiseconds
@INSMOD@
if [ -b /dev/vda ]; then
  echo "inner: vda holds: $(head -n 1 /dev/vda)"
  echo "inner: vda serial: $(cat /sys/block/vda/serial)"
  if echo overwritten | dd of=/dev/vda conv=fsync 2>/dev/null; then
    echo "inner: vda write: accepted"
  else
    echo "inner: vda write: refused"
  fi
  echo "inner: vda read-only flag: $(cat /sys/block/vda/ro)"
  echo "@RW_LINE@" | dd of=/dev/vdb bs=512 conv=sync,fsync 2>/dev/null && echo "inner: vdb line written"
  t0=$(cs); dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null; t1=$(cs)
  dd if=/dev/zero of=/dev/vdb bs=1M seek=1 count=4 conv=fsync 2>/dev/null; t2=$(cs)
  echo "inner: 4 MiB read in $((t1 - t0))0 ms, 4 MiB written in $((t2 - t1))0 ms"
else
  echo "inner: no disks"
fi
if [ -e /sys/class/net/eth0 ]; then
  echo "inner: eth0 mac $(cat /sys/class/net/eth0/address)"
  ip addr add $INNER/24 dev eth0 && ip link set eth0 up
  # busybox-static's wget crashes without NSS (its port lookup); nc with numbers does not.
  get() { printf 'GET /%s HTTP/1.0\r\n\r\n' "$2" | nc -w 5 "$1" 80; }
  echo "inner: fetched: $(get $OUTER index.html | tail -n 1)"
  if [ "$BIG" = 1 ]; then
    t0=$(cs); n=$(get $OUTER big | wc -c); t1=$(cs)
    echo "inner: 4 MiB fetched in $((t1 - t0))0 ms ($n bytes with the headers)"
  fi
  mkdir -p /www && echo "@INNER_PAGE@" > /www/index.html && httpd -p $INNER:80 -h /www && echo "inner: serving"
else
  echo "inner: no nic"
fi
if [ "$ENDING" = ctrl-alt-del ]; then
  echo 0 > /proc/sys/kernel/ctrl-alt-del
  trap 'echo "inner: ctrl-alt-del: powering off"; poweroff -f' INT
  read -r line && echo "inner: console got: $line"
  while :; do sleep 1; done
fi
[ -n "$LINGER" ] && sleep $LINGER
reboot -f
"#;

/// The outer `/init`. `@INSMOD@` becomes the module loads, `@VMM@` the VMM's command before
/// them, `@BOOTS@` the inner boots. It makes the tap `@TAP@` with `@TAP_OUTER@`, and a
/// macvtap `@MACVTAP@` for the VM on a `dummy` parent with a macvlan beside it that has
/// `@MACVLAN_OUTER@`, both in bridge mode, so that frames between this side and the VM
/// cross the macvtap (busybox `ip` cannot set the mode; iproute2's, in `/usr/lib/iproute2`,
/// can). It serves
/// `@OUTER_PAGE@` and 4 MiB of zeros on both with busybox `httpd`.
pub const OUTER_INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "outer: running the VMM before kvm_amd is loaded"
@VMM@
echo "outer: vmm exit $?"
@INSMOD@
if [ -c /dev/kvm ]; then echo "outer: /dev/kvm is there"; fi
dd if=/dev/zero of=/guest/rw.img bs=1M count=8 2>/dev/null
tunctl -t @TAP@ >/dev/null && ip addr add @TAP_OUTER@/24 dev @TAP@ && ip link set @TAP@ up && echo "outer: @TAP@ is up"
/usr/lib/iproute2/ip link add vmparent type dummy && /usr/lib/iproute2/ip link set vmparent up
/usr/lib/iproute2/ip link add link vmparent name @MACVTAP@ type macvtap mode bridge && /usr/lib/iproute2/ip link set @MACVTAP@ up
/usr/lib/iproute2/ip link add link vmparent name macvlan0 type macvlan mode bridge && ip addr add @MACVLAN_OUTER@/24 dev macvlan0 && ip link set macvlan0 up
tapdev=/dev/tap$(cat /sys/class/net/@MACVTAP@/ifindex)
mac=$(cat /sys/class/net/@MACVTAP@/address)
[ -c $tapdev ] && echo "outer: @MACVTAP@ is up: $tapdev, mac $mac"
mkdir -p /www && echo "@OUTER_PAGE@" > /www/index.html
dd if=/dev/zero of=/www/big bs=1M count=4 2>/dev/null
httpd -p 80 -h /www
get() { printf 'GET /%s HTTP/1.0\r\n\r\n' "$2" | nc -w 5 "$1" 80; }
echo "outer: booting a guest that triple-faults"
/bin/ramkey-vmm --kernel /guest/crash.elf --memory 32
echo "outer: vmm exit $?"
@BOOTS@poweroff -f
"#;

/// The outer side's fetch from the inner guest's `httpd` at `@INNER@`, tried about once a
/// second (at most 60 times) while the VMM runs, in the background: a TCP connection started
/// from the outer side, which begins long before the guest has an address.
pub const OUTER_FETCH: &str = r#"(
  i=0; page=; sleep 1
  while [ $i -lt 60 ] && [ -z "$page" ] && pidof ramkey-vmm >/dev/null; do
    page=$(get @INNER@ index.html 2>/dev/null | tail -n 1)
    [ -n "$page" ] || sleep 1
    i=$((i + 1))
  done
  echo "outer: fetched from the inner guest over @NIC@: $page"
) &
"#;

/// The inner boot that ends on SIGTERM, with the VMM's stdin and stdout pipes: `@VMM@` is
/// its command. The first part of the pipeline waits (at most about 60 tries) until the
/// inner guest serves (while the VMM runs), fetches its page from the outer side, prints the
/// VMM's `Seccomp:` mode from `/proc/PID/status`, writes `@CONSOLE_LINE@` to the
/// VMM's stdin and closes it (EOF while the guest runs), waits until the guest printed the
/// line, and sends the VMM SIGTERM. The VMM's stdout goes through `tee` to the console and
/// `/tmp/console.log`.
pub const SIGTERM_BOOT: &str = r#"rm -f /tmp/console.log
{
  i=0; page=
  while [ $i -lt 60 ] && [ -z "$page" ] && pidof ramkey-vmm >/dev/null; do
    page=$(get @INNER@ index.html 2>/dev/null | tail -n 1)
    [ -n "$page" ] || sleep 1
    i=$((i + 1))
  done
  echo "outer: fetched from the inner guest: $page" >&2
  echo "outer: vmm $(grep '^Seccomp:' /proc/$(pidof ramkey-vmm)/status)" >&2
  echo "@CONSOLE_LINE@"
  exec >&-
  i=0
  until grep -q "inner: console got" /tmp/console.log || [ $i -ge 60 ] || ! pidof ramkey-vmm >/dev/null; do
    sleep 1; i=$((i + 1))
  done
  echo "outer: sending SIGTERM to the VMM" >&2
  kill -TERM $(pidof ramkey-vmm)
} | { @VMM@; echo "outer: vmm exit $?" >&2; } | tee /tmp/console.log
"#;
