// Linux's virtio_net driver on Visor's virtio-net, end to end (issue #16): the `linux` guest
// boots with `--net tap=...` inside a network namespace of the test's own, where the TAP has
// the host's address; the guest configures eth0, and the two sides ping each other and move a
// file over TCP each way (busybox nc in the guest, netcat-openbsd on the host side), comparing
// checksums. Release builds only (the guest boots on interp, as LinuxShellTests); needs root
// (a namespace and a TAP), /dev/net/tun, and ping and nc on the host.

import Foundation
import Testing
@testable import Visor

enum NetworkHost {
    static let isRoot = geteuid() == 0
    static let hasTun = FileManager.default.fileExists(atPath: "/dev/net/tun")
    static func tool(_ name: String) -> String? {
        ["/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"].map { $0 + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    static let ip = tool("ip")
    static let ready = isRoot && hasTun && ip != nil && tool("ping") != nil && tool("nc") != nil && tool("md5sum") != nil
    static let why: Comment = "needs root, /dev/net/tun, and ip, ping, nc (netcat-openbsd) and md5sum on the host"
}

@Suite("Linux on virtio-net through a TAP (issue #16)", .serialized,
       .enabled(if: LinuxGuest.interpRunsLinux, "the interp CPU lacks the FPU, FXSR, SSE or SSE2 that Linux requires"),
       .enabled(if: LinuxGuest.releaseBuild, "a debug build's software CPU takes over ten minutes to boot Linux: run swift test -c release --filter LinuxNetworkTests"),
       .enabled(if: NetworkHost.ready, NetworkHost.why))
struct LinuxNetworkTests {
    /// A shell command on the host; its status and output.
    @discardableResult
    func host(_ command: String, timeout: Double = 60) throws -> ProcessResult {
        try runProcess("/bin/sh", ["-c", command], timeout: timeout)
    }

    @Test(.enabled(if: LinuxGuest.bzImageFetched, LinuxGuest.notFetched))
    func pingAndTCPBothWays() throws {
        let pid = Int(getpid())
        let namespace = "visor-net-\(pid)"
        let tap = "vtap\(pid % 100_000)"
        let subnet = "10.\(100 + pid % 100).\((pid / 100) % 250 + 1)"
        let hostAddress = "\(subnet).1", guestAddress = "\(subnet).2"
        let inNamespace = "ip netns exec \(namespace)"
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("visor-net-\(pid)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        let made = try host("ip netns add \(namespace)")
        try #require(made.status == 0, "ip netns add: \(made.stderr)")
        defer { _ = try? host("ip netns del \(namespace)") }   // its TAP goes with it
        let setUp = try host("""
            set -e
            \(inNamespace) ip link set lo up
            \(inNamespace) ip tuntap add \(tap) mode tap
            \(inNamespace) ip addr add \(hostAddress)/24 dev \(tap)
            \(inNamespace) ip link set \(tap) up
            """)
        try #require(setUp.status == 0, "setting up the TAP: \(setUp.stderr)")

        let session = try ConsoleSession(["netns", "exec", namespace, Host.visorPath, "run", "linux", "--engine", "interp",
                                          "--net", "tap=\(tap)", "--timeout", "900s", "--stats"],
                                         executable: NetworkHost.ip ?? "/sbin/ip")
        defer { if session.process.isRunning { _ = session.finish(timeout: 0) } }
        guard let prompt = session.waitFor("visor-linux: /init is running", timeout: 900),
              var at = session.waitFor("/ # ", from: prompt, timeout: 120) else {
            Issue.record("no shell: \(session.text.suffix(3000)) \(session.stderr)")
            return
        }
        /// Types `command` and waits for `answer` after it, then for the next prompt.
        @discardableResult
        func run(_ command: String, expecting answer: String, timeout: TimeInterval = 120) -> Bool {
            session.type(command)
            guard let end = session.waitFor(answer, from: at, timeout: timeout) else {
                Issue.record("'\(command)' did not answer '\(answer)': \(session.text[at...].suffix(1500))")
                return false
            }
            at = session.waitFor("/ # ", from: end, timeout: 120) ?? end
            return true
        }
        /// The guest's md5sum of `path`.
        func guestChecksum(_ path: String) -> String? {
            session.type("md5sum \(path)")
            guard let end = session.waitFor("  \(path)", from: at, timeout: 120) else { return nil }
            let line = session.text[..<end].split(separator: "\n").last.map(String.init) ?? ""
            at = session.waitFor("/ # ", from: end, timeout: 60) ?? end
            return line.split(separator: " ").first.map(String.init)
        }
        func hostChecksum(_ path: String) throws -> String? {
            try host("md5sum \(path)").stdout.split(separator: " ").first.map(String.init)
        }

        // The driver found the device (eth0) with its address in the config space.
        run("cat /sys/class/net/eth0/address", expecting: "\(NetworkConfiguration().address(domainName: "linux", index: 0))")
        guard run("ifconfig eth0 \(guestAddress) netmask 255.255.255.0 up && echo eth0-is-up", expecting: "\neth0-is-up") else { return }

        // The guest pings the host side, the host side pings the guest.
        run("ping -c 3 \(hostAddress)", expecting: "3 packets received", timeout: 180)
        let ping = try host("\(inNamespace) ping -c 3 -W 10 \(guestAddress)", timeout: 120)
        #expect(ping.status == 0 && ping.stdout.contains(" 0% packet loss"), "host ping: \(ping.stdout) \(ping.stderr)")

        // Guest to host over TCP: the host listens, the guest sends a file of random bytes.
        let received = work.appendingPathComponent("from-guest").path
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/bin/sh")
        listener.arguments = ["-c", "exec \(inNamespace) nc -l \(hostAddress) 5001 > \(received)"]
        listener.standardInput = FileHandle.nullDevice
        try listener.run()
        defer { if listener.isRunning { listener.terminate() } }
        let size = 131_072
        run("dd if=/dev/urandom of=/tmp/out bs=1024 count=\(size / 1024) 2>/dev/null; echo made-out", expecting: "\nmade-out")
        let sentChecksum = guestChecksum("/tmp/out")
        usleep(1_000_000)  // the listener binding in its namespace (the guest retries a refused connection too)
        // busybox's nc may be either of its two: the small one shuts its sending side down at
        // the end of its input, netcat 1.10's keeps the connection until the other side closes.
        // So the host waits for the whole file, then closes, and either ends.
        session.type("for i in 1 2 3 4 5 6 7 8 9 10; do nc \(hostAddress) 5001 < /tmp/out && break; sleep 1; done; echo sent-out")
        let deadline = Date().addingTimeInterval(300)
        func receivedBytes() -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: received))?[.size] as? NSNumber)?.intValue ?? 0
        }
        while receivedBytes() < size && Date() < deadline { usleep(100_000) }
        #expect(receivedBytes() == size, "the host received \(receivedBytes()) of \(size) bytes")
        usleep(500_000)
        if listener.isRunning { listener.terminate() }
        listener.waitUntilExit()
        if let end = session.waitFor("\nsent-out", from: at, timeout: 120) {
            at = session.waitFor("/ # ", from: end, timeout: 60) ?? end
        } else {
            Issue.record("the guest's nc did not end: \(session.text[at...].suffix(1500))")
        }
        let receivedChecksum = try hostChecksum(received)
        #expect(sentChecksum != nil && receivedChecksum == sentChecksum, "the file arrived whole on the host")

        // Host to guest: the guest listens, the host sends.
        let outgoing = work.appendingPathComponent("to-guest").path
        try host("head -c \(size) /dev/urandom > \(outgoing)")
        session.type("nc -l -p 5002 > /tmp/in; echo got-in")
        usleep(2_000_000)  // the guest's nc listening (the sender retries too)
        let send = try host("for i in $(seq 1 20); do \(inNamespace) nc -N \(guestAddress) 5002 < \(outgoing) && exit 0; sleep 1; done; exit 1",
                            timeout: 300)
        #expect(send.status == 0, "host nc: \(send.stderr)")
        if let end = session.waitFor("\ngot-in", from: at, timeout: 120) {
            at = session.waitFor("/ # ", from: end, timeout: 60) ?? end
        } else {
            Issue.record("the guest's nc did not end: \(session.text[at...].suffix(1500))")
        }
        let outgoingChecksum = try hostChecksum(outgoing)
        #expect(outgoingChecksum != nil && outgoingChecksum == guestChecksum("/tmp/in"), "the file arrived whole in the guest")

        session.type("poweroff -f")
        let status = session.finish(timeout: 300)
        #expect(status == 0, "visor ends with the guest's power-off: \(session.stderr)")
        // --stats: the network's queues were used both ways, and nothing was dropped.
        #expect(session.stderr.contains("virtio-net 0 (TAP \(tap)"), "\(session.stderr)")
        #expect(!session.stderr.contains("dropped with the receive queue full"), "\(session.stderr)")
    }
}
