// The bodies of include/CVisorHost.h. _GNU_SOURCE here only, for cpu_set_t, sched_setaffinity
// and posix_spawn_file_actions_addclosefrom_np.
#define _GNU_SOURCE
#include "CVisorHost.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <unistd.h>

int cvisorhost_set_timer_slack(unsigned long nanoseconds) {
    return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
}

int cvisorhost_usable_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(getpid(), sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}

int cvisorhost_pin_current_thread(int n) {
    cpu_set_t allowed, one;
    if (n < 0 || sched_getaffinity(getpid(), sizeof allowed, &allowed) != 0) return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || n-- > 0) continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        return sched_setaffinity(0, sizeof one, &one) == 0 ? cpu : -1;
    }
    return -1;
}

int cvisorhost_take_process_affinity(void) {
    cpu_set_t set;
    if (sched_getaffinity(getpid(), sizeof set, &set) != 0) return -1;
    return sched_setaffinity(0, sizeof set, &set);
}

int cvisorhost_spawn_close_from(void *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, lowest);
}

int cvisorhost_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

int cvisorhost_punch_hole(int fd, long long offset, long long length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

int cvisorhost_tap_open(const char *name, char *actual, int virtio_header) {
    if (strlen(name) >= IFNAMSIZ) return -EINVAL;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | (virtio_header ? IFF_VNET_HDR : 0);
    int header_size = 12;  /* struct virtio_net_hdr_v1: the header virtio-net uses with VERSION_1 */
    if (ioctl(fd, TUNSETIFF, &request) != 0
        || (virtio_header && ioctl(fd, TUNSETVNETHDRSZ, &header_size) != 0)) {
        int error = errno;
        close(fd);
        return -error;
    }
    memcpy(actual, request.ifr_name, IFNAMSIZ);
    actual[IFNAMSIZ - 1] = 0;
    return fd;
}

int cvisorhost_tap_set_offload(int fd, unsigned flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) == 0 ? 0 : -errno;
}

/// An AF_INET datagram socket: the handle the interface ioctls (SIOC*IF*) go through.
static int interface_control_socket(void) {
    return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

int cvisorhost_interface_up(const char *name) {
    if (strlen(name) >= IFNAMSIZ) return -EINVAL;
    int sock = interface_control_socket();
    if (sock < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    int result = 0;
    if (ioctl(sock, SIOCGIFFLAGS, &request) != 0) {
        result = -errno;
    } else {
        request.ifr_flags |= IFF_UP;
        if (ioctl(sock, SIOCSIFFLAGS, &request) != 0) result = -errno;
    }
    close(sock);
    return result;
}

int cvisorhost_bridge_add_interface(const char *bridge, const char *name) {
    if (strlen(bridge) >= IFNAMSIZ || strlen(name) >= IFNAMSIZ) return -EINVAL;
    unsigned index = if_nametoindex(name);
    if (index == 0) return -errno;
    int sock = interface_control_socket();
    if (sock < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, bridge, IFNAMSIZ - 1);
    request.ifr_ifindex = (int)index;
    int result = ioctl(sock, SIOCBRADDIF, &request) == 0 ? 0 : -errno;
    close(sock);
    return result;
}

int cvisorhost_enter_network_namespace(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int result = setns(fd, CLONE_NEWNET);
    int saved = errno;
    close(fd);
    errno = saved;
    return result;
}
