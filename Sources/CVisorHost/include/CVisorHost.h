// CVisorHost: Linux calls the Visor runtime needs that Swift cannot make itself, because
// their C declarations are variadic or their arguments are built with macros (CPU_SET) or
// are GNU extensions Swift's Glibc module does not show.
//
// Not API: only the Visor, VisorBench and VisorVirtio targets import this module. The header includes no
// system header and defines no feature macro: a module whose headers see _GNU_SOURCE differs
// from Glibc's and Dispatch's view of the same system types, which Clang refuses in a clean
// build. The bodies are in CVisorHost.c.
#ifndef CVISORHOST_H
#define CVISORHOST_H

/// Sets the calling thread's timer slack (PR_SET_TIMERSLACK) to `nanoseconds`. Linux lets a
/// normal thread's timed waits end up to 50 µs late by default, so that wake-ups batch; a vCPU
/// sleeping until its guest's timer deadline wants to wake on time. Returns 0 or -1 (errno).
int cvisorhost_set_timer_slack(unsigned long nanoseconds);

/// How many host CPUs the process may run on (its main thread's affinity; a cgroup or
/// taskset may allow fewer than are online), or -1.
int cvisorhost_usable_cpus(void);

/// Binds the calling thread to the `n`th (from 0) host CPU the process may run on
/// (sched_setaffinity). Returns that CPU's number, or -1.
int cvisorhost_pin_current_thread(int n);

/// Gives the calling thread the host CPUs of the process's main thread. A new thread inherits
/// its creator's affinity and name: a thread started by a vCPU thread bound under --pin-pcpus
/// (the console writer) must not stay on that one CPU. 0 or -1.
int cvisorhost_take_process_affinity(void);

/// Adds "close every descriptor from `lowest` up" to the posix_spawn_file_actions_t at
/// `actions` (glibc's posix_spawn_file_actions_addclosefrom_np). 0 on success, else an errno.
int cvisorhost_spawn_close_from(void *actions, int lowest);

/// Names the calling thread (at most 15 bytes are kept), as ps -L and top -H show it. 0 or -1.
int cvisorhost_set_thread_name(const char *name);

/// Deallocates bytes [offset, offset + length) of the file open on `fd`, keeping its size
/// (fallocate with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): they read back as zeroes.
/// 0 or -1 (errno; EOPNOTSUPP on a file system without holes).
int cvisorhost_punch_hole(int fd, long long offset, long long length);

/// Attaches to the TAP interface `name` through /dev/net/tun (TUNSETIFF with IFF_TAP |
/// IFF_NO_PI: whole Ethernet frames, no packet-information prefix), creating it when no
/// interface has that name; a name with "%d" lets the kernel pick the first free number. The
/// interface's actual name is copied to `actual` (16 bytes, NUL-terminated). The descriptor
/// is non-blocking and close-on-exec. With `virtio_header` each frame read or written is
/// preceded by a 12-byte struct virtio_net_hdr_v1 (IFF_VNET_HDR, TUNSETVNETHDRSZ), which
/// carries checksum and segmentation offloads. Returns it, or -errno (ENOENT: no
/// /dev/net/tun; EPERM: no CAP_NET_ADMIN; EBUSY: another process has it; EINVAL: a name that is
/// not a TAP's).
int cvisorhost_tap_open(const char *name, char *actual, int virtio_header);
/// TUNSETOFFLOAD: which offloads (TUN_F_CSUM 1, TUN_F_TSO4 2, TUN_F_TSO6 4) the reader of the
/// TAP accepts in the frames it reads. 0 or -errno.
int cvisorhost_tap_set_offload(int fd, unsigned flags);

/// Sets IFF_UP on the interface `name` (SIOCGIFFLAGS, then SIOCSIFFLAGS), as `ip link set
/// NAME up` does. 0 or -errno.
int cvisorhost_interface_up(const char *name);

/// Adds the interface `name` to the bridge `bridge` (SIOCBRADDIF with the interface's index),
/// as `ip link set NAME master BRIDGE` does. 0 or -errno (ENODEV: no such bridge or interface;
/// EOPNOTSUPP: `bridge` is not a bridge).
int cvisorhost_bridge_add_interface(const char *bridge, const char *name);

/// Moves the calling thread (only it) into the network namespace named by the file at `path`
/// (/run/netns/NAME, as `ip netns add` makes it), with setns(2), which Glibc's module hides:
/// sockets it then creates live in that namespace. 0 or -1 (errno).
int cvisorhost_enter_network_namespace(const char *path);

#endif
