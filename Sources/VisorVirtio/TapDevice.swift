// The host side of a network device: a TAP interface (Linux's /dev/net/tun in TAP mode, one
// Ethernet frame per read or write) as a `PacketBackend`, and the setup Xen's vif scripts do
// for a bridged interface (bring it up, add it to a bridge).
//
// Reading waits in poll(2) on two descriptors: the frames' and a pipe `interrupt` writes to, so a reader waiting for a frame (or for room in the device's queue) is woken at
// once by `stop` or by the guest taking a frame.

import CVisorHost
#if canImport(Glibc)
import Glibc
#endif

/// A descriptor that carries whole frames, one per read and write (a TAP, or a datagram
/// socket in tests), as a `PacketBackend`. Owns the descriptor and closes it on deinit.
public final class PacketDescriptor: PacketBackend, @unchecked Sendable {
    // @unchecked: the descriptors are set once; reads (and `readBuffer`) belong to one thread
    // (the device's reader), writes to another (the worker), and the kernel keeps each frame whole.
    /// The frames' descriptor; -1 once closed.
    public private(set) var fd: Int32
    /// A pipe: `interrupt` writes a byte into it, `receive` drains it.
    private let interruptRead: Int32, interruptWrite: Int32
    /// The interface's name, for messages (the TAP's, or a test's label).
    public let name: String
    /// Where `receive` reads a frame before copying out its length: one allocation for the
    /// backend's life, not one per frame. Only the reader thread calls `receive`.
    private var readBuffer = [UInt8](repeating: 0, count: VirtioNet.maximumFrame + VirtioNet.headerSize)
    /// Each frame read and written starts with a virtio-net header (a TAP opened with
    /// IFF_VNET_HDR), so the device can offer checksum and segmentation offloads.
    public let carriesVirtioHeader: Bool

    /// Takes ownership of `fd`, which should be non-blocking (reads are attempted only after
    /// poll says one would not block, but a frame taken meanwhile must not hang the reader).
    public init(fd: Int32, name: String, carriesVirtioHeader: Bool = false) throws(PacketBackendError) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw PacketBackendError("\(name): cannot make a pipe: \(reason)")
        }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        self.fd = fd
        self.carriesVirtioHeader = carriesVirtioHeader
        interruptRead = ends[0]
        interruptWrite = ends[1]
        self.name = name
    }

    deinit {
        close()
        Glibc.close(interruptRead)
        Glibc.close(interruptWrite)
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    public func send(_ frame: [UInt8]) throws(PacketBackendError) {
        guard fd >= 0 else { throw PacketBackendError("\(name): closed") }
        while true {
            let written = frame.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written == frame.count { return }
            if written < 0 && errno == EINTR { continue }
            // EAGAIN: the interface's queue is full; as a NIC would, drop rather than wait.
            let reason = written < 0 ? String(cString: strerror(errno)) : "short write of \(written) bytes"
            throw PacketBackendError("\(name): \(reason)")
        }
    }

    public func receive(acceptingFrames: Bool) -> PacketReceive {
        guard fd >= 0 else { return .closed("\(name): closed") }
        var fds = [pollfd(fd: interruptRead, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: acceptingFrames ? fd : -1, events: Int16(POLLIN), revents: 0)]
        while true {
            let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), -1) }
            if ready < 0 {
                if errno == EINTR { continue }
                return .closed("\(name): poll failed: \(String(cString: strerror(errno)))")
            }
            if fds[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while drain.withUnsafeMutableBytes({ read(interruptRead, $0.baseAddress, $0.count) }) > 0 {}
                return .interrupted
            }
            let events = fds[1].revents
            if events & Int16(POLLIN) != 0 {
                let count = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count > 0 { return .frame(Array(readBuffer[0..<count])) }
                if count < 0 && (errno == EAGAIN || errno == EINTR) { fds[1].revents = 0; continue }
                return .closed("\(name): " + (count == 0 ? "end of file" : String(cString: strerror(errno))))
            }
            if events & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                return .closed("\(name): the interface went away")
            }
        }
    }

    public func setOffloads(_ offloads: PacketOffloads) {
        guard carriesVirtioHeader, fd >= 0 else { return }
        var flags: UInt32 = 0
        if offloads.checksum { flags |= 1 }              // TUN_F_CSUM
        if offloads.checksum && offloads.tso4 { flags |= 2 }  // TUN_F_TSO4
        if offloads.checksum && offloads.tso6 { flags |= 4 }  // TUN_F_TSO6
        // A refusal leaves the TAP giving whole, checksummed frames, which is always allowed.
        _ = cvisorhost_tap_set_offload(fd, flags)
    }

    public func interrupt() {
        // A full pipe (EAGAIN) already holds an interrupt: nothing is lost.
        var byte: UInt8 = 1
        _ = write(interruptWrite, &byte, 1)
    }
}

/// Opening and wiring TAP interfaces. Each needs CAP_NET_ADMIN unless the TAP exists and was
/// made for this user (`ip tuntap add NAME mode tap user USER`).
public enum TapDevice {
    /// Linux's IFNAMSIZ: an interface name has at most 15 bytes.
    public static let maximumNameLength = 15

    /// Why `name` cannot name an interface, or nil (the kernel's dev_valid_name: 1 to 15 bytes,
    /// no '/', ':' or white space, not "." or ".."). `allowingPattern` accepts one "%d".
    public static func nameProblem(_ name: String, allowingPattern: Bool = false) -> String? {
        if name.isEmpty { return "an interface name cannot be empty" }
        if name.utf8.count > maximumNameLength {
            return "'\(name)' is \(name.utf8.count) bytes: an interface name has at most \(maximumNameLength)"
        }
        if name == "." || name == ".." { return "'\(name)' is not an interface name" }
        if let bad = name.first(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) {
            return "'\(name)' contains '\(bad)', which an interface name may not"
        }
        let onePattern = name.filter { $0 == "%" }.count == 1 && name.contains("%d")
        if name.contains("%") && !(allowingPattern && onePattern) {
            return "'\(name)' contains '%', which an interface name may not"
        }
        return nil
    }

    /// Attaches to the TAP `name` (creating it if no interface has that name; "%d" in it picks
    /// the first free number), its frames carrying virtio-net headers. Returns the backend and
    /// the interface's actual name.
    public static func open(_ name: String) throws(PacketBackendError) -> (PacketDescriptor, String) {
        if let problem = nameProblem(name, allowingPattern: true) { throw PacketBackendError("TAP \(problem)") }
        var actual = [CChar](repeating: 0, count: 16)
        let fd = cvisorhost_tap_open(name, &actual, 1)
        guard fd >= 0 else { throw PacketBackendError(openProblem(name, errno: -fd)) }
        let actualName = String(decoding: actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (try PacketDescriptor(fd: fd, name: actualName, carriesVirtioHeader: true), actualName)
    }

    /// Sets the interface up, as `ip link set NAME up`.
    public static func bringUp(_ name: String) throws(PacketBackendError) {
        let result = cvisorhost_interface_up(name)
        guard result == 0 else {
            throw PacketBackendError("cannot bring TAP '\(name)' up: \(String(cString: strerror(-result)))")
        }
    }

    /// Adds the interface `name` to `bridge`, as `ip link set NAME master BRIDGE`.
    public static func addToBridge(_ name: String, bridge: String) throws(PacketBackendError) {
        if let problem = nameProblem(bridge) { throw PacketBackendError("bridge: \(problem)") }
        let result = cvisorhost_bridge_add_interface(bridge, name)
        guard result == 0 else {
            let why: String
            switch result {
            case -ENODEV: why = "there is no bridge named '\(bridge)' (make one: ip link add \(bridge) type bridge)"
            case -EOPNOTSUPP, -EINVAL: why = "'\(bridge)' is not a bridge"
            case -EPERM: why = "permission denied (this needs CAP_NET_ADMIN)"
            default: why = String(cString: strerror(-result))
            }
            throw PacketBackendError("cannot add TAP '\(name)' to bridge '\(bridge)': \(why)")
        }
    }

    /// The message for a failed open of TAP `name`.
    static func openProblem(_ name: String, errno code: Int32) -> String {
        switch code {
        case ENOENT, ENODEV:
            return "cannot open TAP '\(name)': /dev/net/tun does not exist (load the tun module: modprobe tun)"
        case EPERM, EACCES:
            return "cannot open TAP '\(name)': permission denied (this needs CAP_NET_ADMIN, or a TAP made for this user with 'ip tuntap add \(name) mode tap user $USER')"
        case EBUSY:
            return "cannot open TAP '\(name)': it is busy (another process, perhaps another Visor, has it open)"
        case EINVAL:
            return "cannot open TAP '\(name)': an interface of that name exists and is not a TAP (or is a TUN device)"
        default:
            return "cannot open TAP '\(name)': \(String(cString: strerror(code)))"
        }
    }
}
