// The network half of `visor bench io`: TCP through virtio-net between the Linux guest and a
// process on the host, over a TAP in a network namespace the benchmark makes for itself (so
// the host's own network is never touched) and removes at the end.
//
//   namespace visor-bench-PID:  TAP vbtap0, 10.77.0.1/24, up
//     ├─ the guest (visor run ... --net tap=vbtap0, or QEMU's -netdev tap), eth0 10.77.0.2
//     └─ the peer: a thread of this process that entered the namespace (setns), so its
//        sockets live there
//
// Guest to host: the guest pipes `dd if=/dev/zero` into `nc 10.77.0.1 5001`; the peer times
// from accept to the last expected byte. Host to guest: the guest listens with `nc -l -p 5002`,
// the peer connects, sends, shuts its side down and times until the guest has closed (busybox's
// nc exits at the end of the network input). Both figures are the host's clock.

import CVisorHost
import Foundation
import Synchronization
import Visor

/// The namespace and its TAP.
final class BenchNetwork: Sendable {
    let namespace: String
    let tap = "vbtap0"
    static let hostAddress = "10.77.0.1"
    static let guestAddress = "10.77.0.2"
    static let uploadPort: UInt16 = 5001
    static let downloadPort: UInt16 = 5002
    let ip: String

    /// Why the network half cannot run here, or nil.
    static var unavailableReason: String? {
        if geteuid() != 0 { return "the network benchmark makes a network namespace and a TAP: it needs root" }
        if access("/dev/net/tun", R_OK | W_OK) != 0 { return "the network benchmark needs /dev/net/tun" }
        if locate("ip") == nil { return "the network benchmark needs the ip command (iproute2)" }
        return nil
    }

    static func locate(_ command: String) -> String? {
        for folder in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] where access("\(folder)/\(command)", X_OK) == 0 {
            return "\(folder)/\(command)"
        }
        return nil
    }

    init() throws {
        guard let ip = Self.locate("ip") else { throw BenchmarkUnavailable(description: "no ip command") }
        self.ip = ip
        namespace = "visor-bench-\(getpid())"
        try command(["netns", "add", namespace])
        do {
            try command(["-n", namespace, "link", "set", "lo", "up"])
            try command(["-n", namespace, "tuntap", "add", "dev", tap, "mode", "tap"])
            try command(["-n", namespace, "addr", "add", "\(Self.hostAddress)/24", "dev", tap])
            try command(["-n", namespace, "link", "set", tap, "up"])
        } catch {
            remove()
            throw error
        }
    }

    private func command(_ arguments: [String]) throws {
        let (status, output) = try ConsoleChild.run(ip, arguments)
        guard status == 0 else {
            throw BenchmarkError.guestFailed("ip \(arguments.joined(separator: " ")) failed (status \(status)): \(output)")
        }
    }

    /// Removes the namespace, and the TAP with it.
    func remove() { _ = try? ConsoleChild.run(ip, ["netns", "del", namespace]) }

    /// `ip netns exec NAMESPACE` + `command`: a child that runs inside the namespace.
    func inside(_ path: String, _ arguments: [String]) -> (path: String, arguments: [String]) {
        (ip, ["netns", "exec", namespace, path] + arguments)
    }

    /// The guest's commands, after the block phases: address, upload, download.
    static func guestScript(uploadBytes: Int, downloadBytes _: Int) -> String {
        "ifconfig eth0 \(guestAddress) netmask 255.255.255.0 up; "
            + "dd if=/dev/zero bs=65536 count=\(uploadBytes / 65536) 2>/dev/null | nc \(hostAddress) \(uploadPort); "
            + "nc -l -p \(downloadPort) > /dev/null; "
    }
}

/// What the peer measured.
public struct TCPResult: Sendable, Equatable {
    public var uploadBytes: Int
    public var uploadSeconds: Double
    public var downloadBytes: Int
    public var downloadSeconds: Double
    public var uploadMiBPerSecond: Double { uploadSeconds > 0 ? Double(uploadBytes) / 1_048_576 / uploadSeconds : 0 }
    public var downloadMiBPerSecond: Double { downloadSeconds > 0 ? Double(downloadBytes) / 1_048_576 / downloadSeconds : 0 }
}

/// The host side of the TCP transfers, on a thread of its own inside the namespace.
final class TCPPeer: Sendable {
    private let outcome = Mutex<Result<TCPResult, BenchmarkError>?>(nil)
    private let done = DispatchSemaphore(value: 0)
    private let ready = DispatchSemaphore(value: 0)

    /// Starts the peer: it enters `network`'s namespace, listens, and waits for the guest until
    /// `deadline` (monotonic nanoseconds). Returns once it listens (or failed to).
    init(network: BenchNetwork, uploadBytes: Int, downloadBytes: Int, deadline: UInt64) {
        let namespacePath = "/run/netns/\(network.namespace)"
        let thread = Thread { [self] in
            let result = Self.serve(namespacePath: namespacePath, uploadBytes: uploadBytes, downloadBytes: downloadBytes,
                                    deadline: deadline, listening: { ready.signal() })
            outcome.withLock { $0 = result }
            ready.signal()  // in case it failed before listening
            done.signal()
        }
        thread.start()
        ready.wait()
    }

    /// Waits for the peer to finish (its own deadline bounds it).
    func result() -> Result<TCPResult, BenchmarkError> {
        done.wait()
        done.signal()
        return outcome.withLock { $0 } ?? .failure(.guestFailed("the TCP peer ended without a result"))
    }

    private static func serve(namespacePath: String, uploadBytes: Int, downloadBytes: Int, deadline: UInt64,
                              listening: () -> Void) -> Result<TCPResult, BenchmarkError> {
        func failure(_ what: String) -> Result<TCPResult, BenchmarkError> {
            .failure(.guestFailed("TCP peer: \(what): \(String(cString: strerror(errno)))"))
        }
        guard cvisorhost_enter_network_namespace(namespacePath) == 0 else { return failure("cannot enter \(namespacePath)") }
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { return failure("socket") }
        defer { close(listener) }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = socketAddress(BenchNetwork.hostAddress, BenchNetwork.uploadPort)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 1) == 0 else { return failure("bind/listen on \(BenchNetwork.hostAddress):\(BenchNetwork.uploadPort)") }
        listening()

        // Guest to host.
        guard wait(listener, for: Int16(POLLIN), until: deadline) else { return .failure(.guestFailed("TCP peer: the guest never connected")) }
        let upload = accept(listener, nil, nil)
        guard upload >= 0 else { return failure("accept") }
        let uploadStart = monotonicNanoseconds()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var received = 0
        while received < uploadBytes {
            guard wait(upload, for: Int16(POLLIN), until: deadline) else { close(upload); return .failure(.guestFailed("TCP peer: upload stalled at \(received) bytes")) }
            let count = buffer.withUnsafeMutableBytes { recv(upload, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { close(upload); return .failure(.guestFailed("TCP peer: the guest closed after \(received) of \(uploadBytes) bytes")) }
            received += count
        }
        let uploadSeconds = Double(monotonicNanoseconds() &- uploadStart) / 1e9
        close(upload)

        // Host to guest: connect once the guest listens.
        var download: Int32 = -1
        while download < 0 {
            guard monotonicNanoseconds() < deadline else { return .failure(.guestFailed("TCP peer: the guest never listened on \(BenchNetwork.downloadPort)")) }
            let attempt = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard attempt >= 0 else { return failure("socket") }
            var guest = socketAddress(BenchNetwork.guestAddress, BenchNetwork.downloadPort)
            let connected = withUnsafePointer(to: &guest) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(attempt, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if connected == 0 { download = attempt } else { close(attempt); usleep(50_000) }
        }
        defer { close(download) }
        let downloadStart = monotonicNanoseconds()
        let zeroes = [UInt8](repeating: 0, count: 65536)
        var sent = 0
        while sent < downloadBytes {
            guard wait(download, for: Int16(POLLOUT), until: deadline) else { return .failure(.guestFailed("TCP peer: download stalled at \(sent) bytes")) }
            let count = zeroes.withUnsafeBytes { send(download, $0.baseAddress, min($0.count, downloadBytes - sent), Int32(MSG_NOSIGNAL)) }
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard count > 0 else { return failure("send after \(sent) bytes") }
            sent += count
        }
        shutdown(download, Int32(SHUT_WR))
        // The guest's nc closes once it has read everything: the end of the transfer.
        while true {
            guard wait(download, for: Int16(POLLIN), until: deadline) else { return .failure(.guestFailed("TCP peer: the guest did not close after the download")) }
            let count = buffer.withUnsafeMutableBytes { recv(download, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
        }
        let downloadSeconds = Double(monotonicNanoseconds() &- downloadStart) / 1e9
        return .success(TCPResult(uploadBytes: received, uploadSeconds: uploadSeconds, downloadBytes: sent,
                                  downloadSeconds: downloadSeconds))
    }

    private static func socketAddress(_ dotted: String, _ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, dotted, &address.sin_addr)
        return address
    }

    /// Polls `fd` for `events` in slices of 100 ms until `deadline`; false when it passed.
    private static func wait(_ fd: Int32, for events: Int16, until deadline: UInt64) -> Bool {
        while monotonicNanoseconds() < deadline {
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            if poll(&descriptor, 1, 100) > 0 { return true }
        }
        return false
    }
}
