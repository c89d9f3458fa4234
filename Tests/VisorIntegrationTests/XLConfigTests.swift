// xl.cfg domain configurations: the syntax, every key Visor implements, the errors (each naming
// file, line and key), path resolution, warnings for ignored Xen keys, and hostile input.

import Foundation
import Testing
import Visor

/// The error `parse` throws for `text` (read as "a.cfg"), or nil when it parses.
private func parseError(_ text: String, path: String = "a.cfg") -> XLConfigError? {
    do {
        _ = try XLConfig.parse(text, path: path)
        return nil
    } catch {
        return error
    }
}

/// A fresh directory under the system's temporary one; removed by the caller.
private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("visor-xlcfg-\(getpid())-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("xl.cfg domain configurations")
struct XLConfigTests {
    // MARK: Valid files

    @Test("a configuration with every key Visor implements")
    func everyKey() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data([0x7f, 0x45, 0x4c, 0x46]).write(to: dir.appendingPathComponent("vmlinuz"))
        let config = dir.appendingPathComponent("web.cfg")
        try """
            # A web server domain.
            name = "web-01.example"
            kernel = "vmlinuz"            # beside this file
            ramdisk = "boot/initrd.img"
            cmdline = "console=ttyS0 quiet"
            memory = 512
            vcpus = 4
            maxvcpus = 4
            cpus = ["0-3,^1", "4", "all,^7"]
            cpus_soft = "8-15"
            cpu_weight = 512
            cap = 0x190
            engine = 'interp'

            """.write(to: config, atomically: true, encoding: .utf8)

        let (spec, warnings) = try XLConfig.load(path: config.path)
        #expect(warnings.isEmpty)
        #expect(spec == DomainSpec(
            name: "web-01.example", kernel: dir.path + "/vmlinuz", ramdisk: dir.path + "/boot/initrd.img",
            commandLine: "console=ttyS0 quiet", memoryMiB: 512, vcpus: 4, maxVCPUs: 4,
            hardAffinity: ["0-3,^1", "4", "all,^7"], softAffinity: ["8-15", "8-15", "8-15", "8-15"],
            weight: 512, cap: 400, engine: "interp", path: config.path))
        #expect(spec.memoryBytes == 512 << 20)
    }

    @Test("only name and kernel: every other key takes its default")
    func defaults() throws {
        let (spec, warnings) = try XLConfig.parse("name = \"d\"\nkernel = \"demo\"\n", path: "/etc/xen/d.cfg")
        #expect(warnings.isEmpty)
        #expect(spec == DomainSpec(name: "d", kernel: "demo", path: "/etc/xen/d.cfg"))
        #expect(spec.ramdisk == nil && spec.commandLine == "" && spec.memoryMiB == 128 && spec.vcpus == 1)
        #expect(spec.maxVCPUs == nil && spec.hardAffinity == nil && spec.softAffinity == nil)
        #expect(spec.weight == nil && spec.cap == nil && spec.engine == nil)
    }

    @Test("cpus: the string form applies to every vCPU; the list form is one mask per vCPU")
    func affinityForms() throws {
        let base = "name = \"d\"\nkernel = \"demo\"\nvcpus = 3\n"
        let string = try XLConfig.parse(base + "cpus = \"0-3,^1\"\n", path: "a.cfg").spec
        #expect(string.hardAffinity == ["0-3,^1", "0-3,^1", "0-3,^1"])

        let list = try XLConfig.parse(base + "cpus = [\"2\", \"3-8,^5\"]\n", path: "a.cfg").spec
        #expect(list.hardAffinity == ["2", "3-8,^5"])   // vCPU 2 unpinned

        let number = try XLConfig.parse(base + "cpus_soft = 5\ncpus = [ 1, \"2\" ]\n", path: "a.cfg").spec
        #expect(number.softAffinity == ["5", "5", "5"])
        #expect(number.hardAffinity == ["1", "2"])

        // Blanks inside a cpu list are dropped, as xl skips them.
        let spaced = try XLConfig.parse(base + "cpus = \"0-3, ^1\"\n", path: "a.cfg").spec
        #expect(spaced.hardAffinity == ["0-3,^1", "0-3,^1", "0-3,^1"])
    }

    @Test("comments, quoting, escapes, semicolons, multi-line lists, CRLF, no final newline")
    func syntax() throws {
        let text = """
            # comment at the top
            name='q' ; kernel = "/k/vm#not-a-comment" # a comment after a value
            extra = "a\\tb\\n\\"c\\" \\'d\\' e\\\\f \\x41\\x42 é\\xc3\\xa9"
            cpus = [   # the list goes on
               "0",

               "1",   # trailing comma next
            ]
            vcpus=2;memory=0x100;
            """
        let (spec, warnings) = try XLConfig.parse(text, path: "a.cfg")
        #expect(warnings.isEmpty)
        #expect(spec.name == "q")
        #expect(spec.kernel == "/k/vm#not-a-comment")
        #expect(spec.commandLine == "a\tb\n\"c\" 'd' e\\f AB éé")
        #expect(spec.hardAffinity == ["0", "1"])
        #expect(spec.vcpus == 2 && spec.memoryMiB == 256)

        let crlf = try XLConfig.parse("name = \"c\"\r\nkernel = \"demo\"\r\nmemory = 64\r\n", path: "a.cfg").spec
        #expect(crlf.name == "c" && crlf.memoryMiB == 64)

        let empty = try XLConfig.parse("\n\n   \n# only\n;;\nname=\"e\"\nkernel=\"demo\"", path: "a.cfg").spec
        #expect(empty.name == "e")
    }

    @Test("the command line: cmdline, else root= and extra combined as xl does")
    func commandLine() throws {
        let base = "name = \"d\"\nkernel = \"demo\"\n"
        #expect(try XLConfig.parse(base + "root = \"/dev/xvda1\"\nextra = \"ro quiet\"\n", path: "a.cfg").spec
            .commandLine == "root=/dev/xvda1 ro quiet")
        #expect(try XLConfig.parse(base + "root = \"/dev/xvda1\"\n", path: "a.cfg").spec.commandLine == "root=/dev/xvda1")
        #expect(try XLConfig.parse(base + "extra = \"x=1\"\n", path: "a.cfg").spec.commandLine == "x=1")

        let (spec, warnings) = try XLConfig.parse(
            base + "root = \"/dev/sda\"\nextra = \"e\"\ncmdline = \"c\"\n", path: "a.cfg")
        #expect(spec.commandLine == "c")
        #expect(warnings == ["a.cfg:3: root: ignored in favour of cmdline (as in xl)",
                             "a.cfg:4: extra: ignored in favour of cmdline (as in xl)"])
    }

    @Test("Xen keys Visor does not implement are warned about with file, line and key")
    func ignoredKeys() throws {
        let text = """
            name = "d"
            type = "pvh"
            kernel = "demo"
            vfb = [ 'vnc=1' ]
            boot = "c"
            period = 10000
            """
        let (spec, warnings) = try XLConfig.parse(text, path: "/etc/xen/d.cfg")
        #expect(spec.name == "d")
        #expect(warnings == [
            "/etc/xen/d.cfg:2: type: ignored by Visor",
            "/etc/xen/d.cfg:4: vfb: ignored by Visor",
            "/etc/xen/d.cfg:5: boot: ignored by Visor",
            "/etc/xen/d.cfg:6: period: ignored by Visor",
        ])
    }

    @Test("disk: xl's disk specifications, positional or key=value, raw images only, relative to the file")
    func disks() throws {
        let text = """
            name = "d"
            kernel = "demo"
            disk = [ 'root.img,raw,xvda,rw', '/srv/data.img,,xvdb,ro', 'format=raw, vdev=xvdc, access=r, target=/x,y.img',
                     'file:/a.img,xvdd,w' ]
            """
        let (spec, warnings) = try XLConfig.parse(text, path: "/etc/xen/d.cfg")
        #expect(warnings.isEmpty)
        #expect(spec.disks == [DiskConfiguration(path: "/etc/xen/root.img", readOnly: false, vdev: "xvda"),
                               DiskConfiguration(path: "/srv/data.img", readOnly: true, vdev: "xvdb"),
                               DiskConfiguration(path: "/x,y.img", readOnly: true, vdev: "xvdc"),
                               DiskConfiguration(path: "/a.img", readOnly: false, vdev: "xvdd")])
        // Shown back as xl disk specifications (visor list -l, the API's JSON), each reads as itself.
        for disk in spec.disks + [DiskConfiguration(path: "aio:x,target=y", readOnly: true, vdev: "hda")] {
            #expect(try DiskConfiguration(xlSpec: disk.xlSpec) == disk, "\(disk.xlSpec)")
        }
        #expect(spec.disks[2].xlSpec == "format=raw, vdev=xvdc, access=ro, target=/x,y.img")
        func refusal(_ entry: String) -> String {
            parseError("name = \"d\"\nkernel = \"demo\"\ndisk = [ '\(entry)' ]\n")?.description ?? "accepted"
        }
        #expect(refusal("d.qcow2,qcow2,xvda,rw") == "a.cfg:3: disk: element 0: disk 'd.qcow2,qcow2,xvda,rw': format 'qcow2' is not supported: Visor reads raw images only")
        #expect(refusal("d.img,raw,xvda,rw,devtype=cdrom").contains("'devtype=' is not supported by Visor"))
        #expect(refusal("d.img,raw,xvda,rw,cdrom").contains("CD-ROM devices are not supported"))
        #expect(refusal("phy:/dev/vg/d,xvda,w").contains("'phy:' (a host block device) is not supported"))
        #expect(refusal("d.img,raw,,rw").contains("no vdev"))
        #expect(refusal("d.img,raw,xvda,rx").contains("access 'rx' is not one of rw, ro"))
        #expect(refusal(",raw,xvda").contains("no target"))
        #expect(refusal("d.img,raw,xvda,rw,extra").contains("one positional parameter too many"))
        #expect(parseError("name = \"d\"\nkernel = \"demo\"\ndisk = 3\n")?.description.contains("expected a list of disk specifications") == true)
        #expect(parseError("name = \"d\"\nkernel = \"demo\"\ndisk = [ 'a,raw,xvda', 'b,raw,xvdb', 'c,raw,xvdc', 'd,raw,xvdd', 'e,raw,xvde', 'f,raw,xvdf' ]\n")?
            .description.contains("6 disks: a domain may have at most 5") == true)
    }

    @Test("--disk FILE[,ro]: the option's forms and its errors")
    func diskOption() throws {
        #expect(try DiskConfiguration(option: "root.img") == DiskConfiguration(path: "root.img", readOnly: false))
        #expect(try DiskConfiguration(option: "root.img,ro") == DiskConfiguration(path: "root.img", readOnly: true))
        #expect(try DiskConfiguration(option: "/a,b/root.img,rw") == DiskConfiguration(path: "/a,b/root.img", readOnly: false))
        #expect(throws: DiskSpecError("--disk 'root.img,readonly': 'readonly' is not an option: write FILE, FILE,ro or FILE,rw")) {
            try DiskConfiguration(option: "root.img,readonly")
        }
        #expect(throws: DiskSpecError("--disk ',ro': no file named: write FILE, FILE,ro or FILE,rw")) {
            try DiskConfiguration(option: ",ro")
        }
    }

    @Test("on_poweroff, on_reboot and on_crash take destroy, restart or preserve; xl's defaults otherwise")
    func endActions() throws {
        let base = "name = \"d\"\nkernel = \"demo\"\n"
        let plain = try XLConfig.parse(base, path: "a.cfg").spec
        #expect(plain.onPowerOff == .destroy && plain.onReboot == .restart && plain.onCrash == .destroy)
        let set = try XLConfig.parse(base + "on_poweroff = \"preserve\"\non_reboot = \"destroy\"\non_crash = \"restart\"\n",
                                     path: "a.cfg")
        #expect(set.spec.onPowerOff == .preserve && set.spec.onReboot == .destroy && set.spec.onCrash == .restart)
        #expect(set.warnings.isEmpty)
        func refusal(_ line: String) -> String {
            do {
                _ = try XLConfig.parse(base + line + "\n", path: "a.cfg")
                return "accepted"
            } catch {
                return error.description
            }
        }
        #expect(refusal("on_crash = \"coredump-restart\"")
                == "a.cfg:3: on_crash: \"coredump-restart\" is an xl action Visor does not have; use destroy, restart, preserve")
        #expect(refusal("on_reboot = \"reset\"") == "a.cfg:3: on_reboot: \"reset\" is not an action; use destroy, restart, preserve")
        #expect(refusal("on_poweroff = 1").hasPrefix("a.cfg:3: on_poweroff: expected a string"))
        // The JSON form and list -l's echo carry them too.
        let json = try XLConfig.parse(json: Array(#"{"name": "d", "kernel": "demo", "on_crash": "preserve"}"#.utf8), path: "r")
        #expect(json.spec.onCrash == .preserve)
    }

    // MARK: Paths

    @Test("relative kernel and ramdisk paths are taken from the configuration's directory")
    func relativePaths() throws {
        func spec(_ kernel: String, ramdisk: String? = nil, path: String) throws -> DomainSpec {
            var text = "name = \"d\"\nkernel = \"\(kernel)\"\n"
            if let ramdisk { text += "ramdisk = \"\(ramdisk)\"\n" }
            return try XLConfig.parse(text, path: path).spec
        }
        #expect(try spec("boot/vmlinuz", ramdisk: "initrd.img", path: "/etc/xen/d.cfg").kernel == "/etc/xen/boot/vmlinuz")
        #expect(try spec("boot/vmlinuz", ramdisk: "initrd.img", path: "/etc/xen/d.cfg").ramdisk == "/etc/xen/initrd.img")
        #expect(try spec("../k/guest.elf", path: "cfg/d.cfg").kernel == "cfg/../k/guest.elf")
        #expect(try spec("guest.elf", path: "/d.cfg").kernel == "/guest.elf")
        #expect(try spec("/abs/vmlinuz", ramdisk: "/abs/initrd", path: "/etc/xen/d.cfg").ramdisk == "/abs/initrd")
        #expect(try spec("/abs/vmlinuz", path: "/etc/xen/d.cfg").kernel == "/abs/vmlinuz")
        // A config in the current directory: relative paths stay relative to it.
        #expect(try spec("boot/vmlinuz", path: "d.cfg").kernel == "boot/vmlinuz")
        // No "/", no ".elf", no such file beside the config: a built-in guest name, left as is.
        #expect(try spec("demo", path: "/etc/xen/d.cfg").kernel == "demo")

        // A bare name that is a file beside the configuration is that file.
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data([1]).write(to: dir.appendingPathComponent("demo"))
        #expect(try spec("demo", path: dir.path + "/d.cfg").kernel == dir.path + "/demo")
    }

    @Test("load: a missing file, a directory and non-UTF-8 text are errors naming the file")
    func loadErrors() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.path + "/none.cfg"
        #expect(throws: XLConfigError(path: missing, message: "the domain configuration file does not exist")) {
            try XLConfig.load(path: missing)
        }
        #expect(throws: XLConfigError(path: dir.path, message: "is a directory, not a domain configuration file")) {
            try XLConfig.load(path: dir.path)
        }
        let binary = dir.appendingPathComponent("bin.cfg")
        try Data([0x6e, 0x61, 0xff, 0xfe, 0x0a]).write(to: binary)
        #expect(throws: XLConfigError(path: binary.path, message: "is not UTF-8 text")) {
            try XLConfig.load(path: binary.path)
        }
        let big = dir.appendingPathComponent("big.cfg")
        try Data(repeating: 0x23, count: XLConfig.maximumFileBytes + 1).write(to: big)
        let error = try #require(throws: XLConfigError.self) { try XLConfig.load(path: big.path) }
        #expect(error.description.hasPrefix(big.path + ": is \(XLConfig.maximumFileBytes + 1) bytes long"))
    }

    // MARK: Errors

    /// Each error's text starts with `file:line: key:` exactly.
    static let errorCases: [(text: String, message: String)] = [
        ("kernel = \"demo\"\n",
         "a.cfg: name: missing: every domain needs a name (name = \"guest\")"),
        ("name = \"d\"\n",
         "a.cfg: kernel: missing: say which kernel to boot (a path or a built-in guest name)"),
        ("name = \"d\"\nkernel = \"demo\"\nmemory = 512M\n",
         "a.cfg:3: memory: 512M is not an integer (write decimal digits or 0x and hex digits, with no unit)"),
        ("name = \"d\"\nkernel = \"demo\"\nmemory = \"512\"\n",
         "a.cfg:3: memory: expected a number, found the string \"512\" (write it without quotes)"),
        ("name = \"d\"\nkernel = 7\n",
         "a.cfg:2: kernel: expected a string in quotes, found the number 7"),
        ("name = \"d\"\nkernel = [\"a\"]\n",
         "a.cfg:2: kernel: expected a string in quotes, found a list"),
        ("name = \"d\"\nkernel = \"demo\"\n\ncpu_weight = 70000\n",
         "a.cfg:4: cpu_weight: 70000 is out of range 1-65535"),
        ("name = \"d\"\nkernel = \"demo\"\nmemory = 4\n",
         "a.cfg:3: memory: 4 is out of range 8-1048576 (MiB)"),
        ("name = \"d\"\nkernel = \"demo\"\nvcpus = 65\n",
         "a.cfg:3: vcpus: 65 is out of range 1-64"),
        ("name = \"d\"\nkernel = \"demo\"\nvcpus = 0\n",
         "a.cfg:3: vcpus: 0 is out of range 1-64"),
        ("name = \"d\"\nkernel = \"demo\"\nvcpus = 2\ncap = 201\n",
         "a.cfg:4: cap: 201 is out of range 0-200 (percent of one pCPU, at most 100 per vCPU; vcpus = 2)"),
        ("name = \"d\"\nkernel = \"demo\"\ncpus = \"0-3,x\"\n",
         "a.cfg:3: cpus: \"0-3,x\" is not a cpu list: write pCPU numbers 0-255, ranges and exclusions such as "
            + "\"0-3,^1\" or \"all,^7\" (NUMA node terms are not supported)"),
        ("name = \"d\"\nkernel = \"demo\"\nvcpus = 2\ncpus_soft = [\"1\", \"nodes:0\"]\n",
         "a.cfg:4: cpus_soft: element 1 (vCPU 1): \"nodes:0\" is not a cpu list"),
        ("name = \"d\"\nkernel = \"demo\"\ncpus = \"256\"\n",
         "a.cfg:3: cpus: \"256\" is not a cpu list"),
        ("name = \"d\"\nkernel = \"demo\"\ncpus = \"0-3,^0-3\"\n",
         "a.cfg:3: cpus: \"0-3,^0-3\" selects no pCPU"),
        ("name = \"d\"\nkernel = \"demo\"\ncpus = [\"1\", \"2\"]\n",
         "a.cfg:3: cpus: 2 cpu lists for 1 vCPU: element i of the list is vCPU i's mask"),
        ("name = \"d\"\nkernel = \"demo\"\ncpus = []\n",
         "a.cfg:3: cpus: the list is empty"),
        ("name = \"d\"\nmemory = 256\nkernel = \"demo\"\n# again\nmemory = 512\n",
         "a.cfg:5: memory: given twice, on line 2 and on line 5"),
        ("name = \"d\"\nkernel = \"demo\nmemory = 64\n",
         "a.cfg:2: kernel: unterminated string: a string must end on the line it starts"),
        ("name = \"d\"\nkernel = 'demo",
         "a.cfg:2: kernel: unterminated string: a string must end on the line it starts"),
        ("name = \"d\"\nkernel = \"demo\"\ncpus = [\"1\",\n\"2\"\nmemory = 64\n",
         "a.cfg:3: cpus: unterminated list: the '[' on line 3 has no ']' (found 'memory' on line 5 where ',' or ']' should be)"),
        ("name = \"d\"\nkernel = \"demo\"\ncpus = [\"1\",\n",
         "a.cfg:3: cpus: unterminated list: the '[' on line 3 has no ']'"),
        ("name = \"d\"\nkernel = \"demo\"\nvcpu = 2\n",
         "a.cfg:3: vcpu: unknown key; Visor understands name, kernel, ramdisk, cmdline, extra, root, memory, vcpus, "
            + "maxvcpus, cpus, cpus_soft, cpu_weight, cap, engine, on_poweroff, on_reboot, on_crash, disk, vif, console (and ignores"),
        ("name = \"d\"\nkernel = \"demo\"\nvcpus = 4\nmaxvcpus = 2\n",
         "a.cfg:4: maxvcpus: 2 is less than vcpus (4): maxvcpus is the most vCPUs the domain may ever have"),
        ("name = \"d\"\nkernel = \"demo\"\nvcpus = 2\nmaxvcpus = 8\n",
         "a.cfg:4: maxvcpus: 8 is more than vcpus (2): Visor does not hot-plug vCPUs, so maxvcpus must equal vcpus or be left out"),
        ("name = \"d\"\nkernel = \"demo\"\nengine = \"vmware\"\n",
         "a.cfg:3: engine: unknown engine 'vmware': choose one of kvm, interp, bt"),
        ("name = \"my vm\"\nkernel = \"demo\"\n",
         "a.cfg:1: name: \"my vm\" is not a domain name: use 1-64 letters, digits, '_', '.' or '-'"),
        ("name = \"\"\nkernel = \"demo\"\n",
         "a.cfg:1: name: \"\" is not a domain name"),
        ("name = \"d\"\nkernel = \"\"\n",
         "a.cfg:2: kernel: is empty"),
        ("name = \"d\" kernel = \"demo\"\n",
         "a.cfg:1: name: expected the end of the line or ';' after the value, found 'kernel'"),
        ("name \"d\"\n",
         "a.cfg:1: name: expected '=' after the key, found the string \"d\""),
        ("name =\nkernel = \"demo\"\n",
         "a.cfg:1: name: expected a value (a number, a \"string\" or a [list]), found the end of the line"),
        ("name = \"d\"\n\"kernel\" = 1\n",
         "a.cfg:2: expected a setting such as name = \"guest\", found the string \"kernel\""),
        ("name = \"d\"\nvcpus = -1\n",
         "a.cfg:2: vcpus: unexpected '-': numbers cannot be negative"),
        ("name = \"d\"\nkernel = \"a\\qb\"\n",
         "a.cfg:2: kernel: \\q is not an escape: use \\n \\t \\\" \\' \\\\ or \\xHH"),
        ("name = \"d\"\nkernel = \"a\\x4\"\n",
         "a.cfg:2: kernel: \\x in a string must be followed by two hex digits"),
        ("name = \"d\"\nkernel = \"\\xff\"\n",
         "a.cfg:2: kernel: the string's \\x escapes do not make UTF-8 text"),
        ("name = \"d\"\n@ = 1\n",
         "a.cfg:2: unexpected character '@'"),
        ("name = \"d\"\nkernel = \"demo\"\ncpus = [[\"1\"]]\n",
         "a.cfg:3: cpus: element 0 (vCPU 0): a list inside the list"),
    ]

    @Test("every kind of error names file, line and key", arguments: errorCases.indices)
    func errors(_ index: Int) {
        let (text, message) = Self.errorCases[index]
        let error = parseError(text)
        #expect(error?.description.hasPrefix(message) == true, "\(error?.description ?? "no error") for \(text.debugDescription)")
    }

    @Test("the error carries its parts: path, line and key")
    func errorParts() {
        let error = parseError("name = \"d\"\nkernel = \"demo\"\n\n\n\n\ncpu_weight = 70000\n")
        #expect(error == XLConfigError(path: "a.cfg", line: 7, key: "cpu_weight", message: "70000 is out of range 1-65535"))
        #expect(error?.description == "a.cfg:7: cpu_weight: 70000 is out of range 1-65535")
    }

    @Test("the first problem in the file is the one reported")
    func firstProblemWins() {
        let error = parseError("name = \"d\"\nmemory = 1\nkernel = \"demo\"\ncpu_weight = 0\n")
        #expect(error?.line == 2 && error?.key == "memory")
    }

    // MARK: Hostile input

    @Test("huge numbers are out of range, not overflows")
    func hugeNumbers() {
        let base = "name = \"d\"\nkernel = \"demo\"\n"
        for text in ["memory = 99999999999999999999999999999999", "memory = 0xffffffffffffffffffffff",
                     "cap = 18446744073709551615", "cap = 18446744073709551616", "vcpus = 9223372036854775808",
                     "maxvcpus = 99999999999999999999", "cpu_weight = 0x8000000000000000",
                     "cpus = 99999999999999999999999", "cpus = \"0-99999999999999999999999\"",
                     "cpus = \"99999999999999999999999-1\""] {
            let error = parseError(base + text + "\n")
            #expect(error?.line == 3, "\(text): \(error?.description ?? "no error")")
        }
        let long = String(repeating: "9", count: 100_000)
        let error = parseError(base + "memory = \(long)\n")
        #expect(error?.key == "memory")
        #expect((error?.description.count ?? .max) < 200, "a hostile value must not flood the message")
    }

    @Test("very long lines parse or fail cleanly with short messages")
    func longLines() throws {
        let huge = String(repeating: "x", count: 1 << 20)
        let base = "name = \"d\"\nkernel = \"demo\"\n"
        // A long comment and a long command line are fine.
        let spec = try XLConfig.parse("#" + huge + "\n" + base + "extra = \"\(huge)\"\n", path: "a.cfg").spec
        #expect(spec.commandLine.count == 1 << 20)
        for text in ["name = \"\(huge)\"\nkernel = \"demo\"\n",
                     base + huge + " = 1\n",
                     base + "cpus = \"" + String(repeating: "0-255,", count: 100_000) + "1\"\n",
                     base + "cpus = [" + String(repeating: "\"1\",", count: 100_000) + "]\n",
                     base + "memory = 1" + huge + "\n"] {
            let error = parseError(text)
            #expect(error != nil)
            #expect((error?.description.count ?? .max) < 600, "\(error?.description.prefix(200) ?? "")")
        }
    }

    @Test("NUL bytes and control characters are errors, not traps")
    func nulBytes() {
        let base = "name = \"d\"\nkernel = \"demo\"\n"
        #expect(parseError(base + "\u{0}") == XLConfigError(path: "a.cfg", line: 3, message: "unexpected NUL byte"))
        #expect(parseError(base + "extra = \"a\u{0}b\"\n")?.description == "a.cfg:3: extra: a NUL byte inside a string")
        #expect(parseError(base + "extra = \"a\\x00b\"\n")?.description == "a.cfg:3: extra: a string cannot contain \\x00")
        #expect(parseError(base + "memory = \u{0}\n")?.description == "a.cfg:3: memory: unexpected NUL byte")
        #expect(parseError(base + "\u{1}\n")?.description == "a.cfg:3: unexpected character U+1")
        #expect(parseError("name\u{0} = \"d\"\n")?.line == 1)
    }

    @Test("unbalanced brackets and deeply nested lists are errors, not traps")
    func brackets() {
        let base = "name = \"d\"\nkernel = \"demo\"\n"
        for text in ["cpus = ]", "cpus = [[[", "cpus = [\"1\"]]", "]]]", "[", "cpus = [,]", "cpus = [\"1\",,]",
                     "cpus = [\"1\" \"2\"]", "cpus = [\"1\"\n", "= 3", "cpus = [ = ]"] {
            let error = parseError(base + text + "\n")
            #expect(error?.line == 3, "\(text): \(error?.description ?? "no error")")
        }
        let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
        #expect(parseError(base + "cpus = \(deep)\n")?.description
                == "a.cfg:3: cpus: lists nested more than \(XLConfig.maximumListDepth) deep")
        let unclosed = String(repeating: "[", count: 200_000)
        #expect(parseError(base + "cpus = \(unclosed)\n")?.key == "cpus")
        // Nesting is legal syntax for keys Visor ignores, up to the limit.
        let nested = String(repeating: "[", count: XLConfig.maximumListDepth) + "1"
            + String(repeating: "]", count: XLConfig.maximumListDepth)
        #expect(parseError(base + "vfb = \(nested)\n") == nil)
    }

    @Test("every prefix of a valid file, and random syntax soup, parses or fails cleanly")
    func fuzz() {
        let valid = """
            name = "fz"  # c
            kernel = 'k\\x41\\n'
            cpus = [ "0-3,^1", 2, ]; memory = 0x40
            vcpus = 2
            vfb = [ [ 'a' ], "b" ]

            """
        let bytes = Array(valid.utf8)
        for n in 0...bytes.count {
            _ = parseError(String(decoding: bytes[..<n], as: UTF8.self))
        }
        // A deterministic generator over the characters the grammar cares about.
        let alphabet = Array("name kernel cpus vcpus = [ ] , ; # \" ' \\ x 0x 9 \n \r \t \u{0} - ^ é".unicodeScalars)
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        var refusals = Set<String>()
        for _ in 0..<2000 {
            var text = String.UnicodeScalarView()
            for _ in 0..<Int(state % 60) {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                text.append(alphabet[Int(state >> 33) % alphabet.count])
            }
            state = state &* 6364136223846793005 &+ 1442695040888963407
            if let error = parseError(String(text)) {
                refusals.insert(error.message)
                #expect(error.path == "a.cfg")
            }
        }
        // The soup must reach many of the parser's error paths, or the loop checks little.
        #expect(refusals.count >= 5, "refused only with: \(refusals)")
    }

    @Test("a long unknown engine is named bounded: the message stays short (the xlconfig fuzz target's crash)")
    func longEngineNameIsBounded() throws {
        // Fuzz/crashes/xlconfig-crash-80169037…: a 1,068-byte refusal echoing the whole value.
        let engine = String(repeating: "1,11,", count: 400)
        let error = try #require(parseError("name = \"d\"\nkernel = \"demo\"\nengine = '\(engine)'\n"))
        #expect(error.message.contains("unknown engine '1,11,1,11,"), "\(error.message)")
        #expect(error.description.utf8.count < 200, "\(error.description.utf8.count) bytes: \(error.description.prefix(300))")
    }
}
