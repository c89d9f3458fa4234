#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import Visor
import VisorVirtio

/// `--net tap=NAME[,mac=...]` and xl.cfg `vif = [ ... ]`: their forms and their errors.
@Suite struct NetSpecTests {
    func parseError(_ text: String) -> XLConfigError? {
        do { _ = try XLConfig.parse(text, path: "a.cfg"); return nil } catch { return error }
    }

    @Test func netOption() throws {
        #expect(try NetworkConfiguration(option: "tap=tap0") == NetworkConfiguration(tap: "tap0"))
        #expect(try NetworkConfiguration(option: "tap=tap0,mac=02:00:00:aa:bb:cc")
                == NetworkConfiguration(tap: "tap0", mac: MACAddress("02:00:00:aa:bb:cc")))
        func refusal(_ text: String) -> String {
            do { _ = try NetworkConfiguration(option: text); return "accepted" } catch { return error.description }
        }
        #expect(refusal("tap0") == "--net 'tap0': 'tap0' is not key=value: write tap=NAME or tap=NAME,mac=XX:XX:XX:XX:XX:XX")
        #expect(refusal("mac=02:00:00:00:00:01").contains("no tap=NAME"))
        #expect(refusal("tap=a-very-long-name0").contains("at most 15"))
        #expect(refusal("tap=t,mac=02:00:00:00:00").contains("is not an address of the form XX:XX:XX:XX:XX:XX"))
        #expect(refusal("tap=t,mac=01:00:5e:00:00:01").contains("multicast"))
        #expect(refusal("tap=t,bridge=br0").contains("'bridge=' is not supported"))
        #expect(refusal("tap=t,tap=u").contains("given twice"))
    }

    @Test func vifEntries() throws {
        let text = """
            name = "d"
            kernel = "demo"
            vif = [ 'bridge=xenbr0,mac=00:16:3e:00:00:01', 'vifname=web0', 'tap=t1, type=vif, model=virtio' ]
            """
        let (spec, warnings) = try XLConfig.parse(text, path: "/etc/xen/d.cfg")
        #expect(warnings.isEmpty)
        #expect(spec.networks == [NetworkConfiguration(bridge: "xenbr0", mac: MACAddress("00:16:3e:00:00:01")),
                                  NetworkConfiguration(tap: "web0"), NetworkConfiguration(tap: "t1")])
        // Shown back as vif specifications (visor list -l, the API's JSON), each reads as itself.
        for network in spec.networks + [NetworkConfiguration(tap: "t", bridge: "br", mac: MACAddress("02:00:00:00:00:02"))] {
            #expect(try NetworkConfiguration(xlSpec: network.xlSpec) == network, "\(network.xlSpec)")
        }
        func refusal(_ entry: String) -> String {
            parseError("name = \"d\"\nkernel = \"demo\"\nvif = [ '\(entry)' ]\n")?.description ?? "accepted"
        }
        #expect(refusal("mac=00:16:3e:00:00:01") == "a.cfg:3: vif: element 0: vif 'mac=00:16:3e:00:00:01': no bridge= or tap=: name the bridge Visor adds its TAP to, or a TAP to use")
        #expect(refusal("bridge=br0,script=vif-route").contains("'script=' is not supported by Visor"))
        #expect(refusal("bridge=br0,model=e1000").contains("model 'e1000' is not supported"))
        #expect(refusal("bridge=br0,type=foo").contains("type 'foo' is not one of vif, ioemu"))
        #expect(refusal("tap=a,vifname=b").contains("both name the TAP"))
        #expect(refusal("bridge=a/b").contains("contains '/'"))
        #expect(parseError("name = \"d\"\nkernel = \"demo\"\nvif = 3\n")?.description.contains("expected a list of vif specifications") == true)
        #expect(parseError("name = \"d\"\nkernel = \"demo\"\nvif = [ [ 'a' ] ]\n")?.description.contains("expected a vif specification in quotes") == true)
        let six = (0..<6).map { "'tap=t\($0)'" }.joined(separator: ", ")
        #expect(parseError("name = \"d\"\nkernel = \"demo\"\nvif = [ \(six) ]\n")?.description.contains("at most 5 virtio devices") == true)
    }

    @Test("--net: a bad option, too many devices and an interface that is not a TAP are refused clearly")
    func badNetworks() throws {
        let option = try runVisor(["run", "hello", "--net", "tap0"])
        #expect(option.status == 64)
        #expect(option.stderr.contains("'tap0' is not key=value"), "stderr: \(option.stderr)")
        let image = "/tmp/visor-netspec-\(getpid()).img"
        #expect(creat(image, 0o644) >= 0 && truncate(image, 1 << 20) == 0)
        defer { unlink(image) }
        let disks = (0..<3).flatMap { _ in ["--disk", image + ",ro"] }
        let nets = (0..<3).flatMap { ["--net", "tap=vt\($0)"] }
        let many = try runVisor(["run", "hello"] + disks + nets, timeout: 600)
        #expect(many.status == 65)
        #expect(many.stderr.contains("3 disks and 3 network interfaces: a domain may have at most 5 virtio devices in all"),
                "stderr: \(many.stderr)")
    }

    @Test("--net tap=lo: an interface that is not a TAP is named as such", .enabled(if: geteuid() == 0, "needs root to try TUNSETIFF"))
    func notATap() throws {
        let r = try runVisor(["run", "hello", "--engine", "interp", "--net", "tap=lo"], timeout: 600)
        #expect(r.status == 65)
        #expect(r.stderr.contains("cannot open TAP 'lo': an interface of that name exists and is not a TAP"), "stderr: \(r.stderr)")
    }

    @Test("xl.cfg vif 'bridge=BR': Visor makes a TAP vifN.0, brings it up and adds it to the bridge; it goes when Visor ends",
          .enabled(if: geteuid() == 0 && FileManager.default.fileExists(atPath: "/dev/net/tun")
                       && (FileManager.default.isExecutableFile(atPath: "/usr/sbin/bridge") || FileManager.default.isExecutableFile(atPath: "/sbin/bridge")),
                   "needs root, /dev/net/tun and iproute2's ip and bridge"))
    func bridgedVif() throws {
        let tools = FileManager.default.isExecutableFile(atPath: "/usr/sbin/bridge") ? "/usr/sbin/" : "/sbin/"
        let ip = tools + "ip"
        func inNamespace(_ arguments: [String]) throws -> ProcessResult {
            try runProcess(ip, ["netns", "exec", namespace] + arguments)
        }
        let namespace = "visor-br-\(getpid())"
        try #require(try runProcess(ip, ["netns", "add", namespace]).status == 0)
        defer { _ = try? runProcess(ip, ["netns", "del", namespace]) }
        try #require(try inNamespace([ip, "link", "add", "brv0", "type", "bridge"]).status == 0)
        // The namespace stays as `ip netns add` makes it, loopback down: there Foundation cannot
        // make its CFSocket wake-up pair, and Visor, when it waited for `make` (the guest build)
        // through Foundation's Process, never saw it end (HostProcess spawns it itself now).
        let configuration = "/tmp/visor-vif-\(getpid()).cfg"
        try """
            name = "bridged"
            kernel = "cpuhog"
            engine = "interp"
            extra = "ms=600000"
            vif = [ 'bridge=brv0,mac=02:00:00:00:00:09' ]
            """.write(toFile: configuration, atomically: true, encoding: .utf8)
        defer { unlink(configuration) }
        let visor = Process()
        visor.executableURL = URL(fileURLWithPath: ip)
        visor.arguments = ["netns", "exec", namespace, Host.visorPath, "run", configuration, "--for", "120s"]
        visor.standardInput = FileHandle.nullDevice
        visor.standardOutput = FileHandle.nullDevice
        visor.standardError = FileHandle.nullDevice
        try visor.run()
        defer { if visor.isRunning { visor.terminate(); visor.waitUntilExit() } }
        // The guest runs for ten minutes (cpuhog's ms=); the TAP appears as the domain is made (guests may be built first).
        var ports = ""
        for _ in 0..<600 where !ports.contains("master brv0") {
            usleep(500_000)
            ports = try inNamespace([tools + "bridge", "link"]).stdout
            if !visor.isRunning { break }
        }
        #expect(ports.contains("vif") && ports.contains(".0: <") && ports.contains("master brv0"), "bridge link: \(ports)")
        #expect(ports.contains(",UP"), "the TAP is up: \(ports)")
        visor.terminate()
        visor.waitUntilExit()
        let after = try inNamespace([ip, "-br", "link"]).stdout
        #expect(!after.contains("vif"), "the TAP Visor made went away with it: \(after)")
    }
}
