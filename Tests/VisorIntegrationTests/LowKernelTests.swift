// A multiboot kernel that loads where Visor used to keep its boot stack and information
// (0x8000-0xa000) boots, as it does under QEMU; one in the PC's reserved hole is refused with
// status 65 (issue #10 item 9). The kernel is a few hand-assembled 32-bit instructions in an
// ELF32 file built here: it checks EAX, prints its command line from the multiboot information
// (EBX) through a call (so it uses the boot stack), and powers off.

import Foundation
import Testing

@Suite("Multiboot kernels in low memory", .timeLimit(.minutes(2)))
struct LowKernelTests {
    static let code: [UInt8] = [
        0x3d, 0x02, 0xb0, 0xad, 0x2b,  // cmp eax, 0x2BADB002
        0x75, 0x10,                    // jne fail
        0xe8, 0x13, 0x00, 0x00, 0x00,  // call print_cmdline
        0x66, 0xba, 0x04, 0x06,        // mov dx, 0x604 (ACPI PM1a control)
        0x66, 0xb8, 0x00, 0x20,        // mov ax, SLP_EN
        0x66, 0xef,                    // out dx, ax: power off, status 0
        0xf4,                          // hlt
        // fail:
        0x66, 0xba, 0xf4, 0x00,        // mov dx, 0xf4 (debug exit)
        0xb0, 0x01,                    // mov al, 1
        0xee,                          // out dx, al: status 3
        0xf4,                          // hlt
        // print_cmdline:
        0x8b, 0x73, 0x10,              // mov esi, [ebx + 16] (cmdline)
        0x66, 0xba, 0xf8, 0x03,        // mov dx, 0x3f8 (COM1)
        0xac,                          // 1: lodsb
        0x84, 0xc0,                    // test al, al
        0x74, 0x03,                    // jz 2f
        0xee,                          // out dx, al
        0xeb, 0xf8,                    // jmp 1b
        0xb0, 0x0a,                    // 2: mov al, '\n'
        0xee,                          // out dx, al
        0xc3,                          // ret
    ]

    /// An ELF32 multiboot kernel: one segment at `address`, `memorySize` bytes (the code, then bss).
    static func kernel(at address: UInt32, memorySize: UInt32) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 0x100)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) {
            for i in 0..<(T.bitWidth / 8) { b[at + i] = UInt8(truncatingIfNeeded: v >> (i * 8)) }
        }
        b.replaceSubrange(0..<8, with: [0x7f, 0x45, 0x4c, 0x46, 1, 1, 1, 0])  // ELF32, little-endian
        put(UInt16(2), 16); put(UInt16(3), 18); put(UInt32(1), 20)           // ET_EXEC, EM_386, EV_CURRENT
        put(address, 24); put(UInt32(52), 28)                                 // e_entry, e_phoff
        put(UInt16(52), 40); put(UInt16(32), 42); put(UInt16(1), 44)         // e_ehsize, e_phentsize, e_phnum
        // PT_LOAD: file offset 0x100, p_vaddr = p_paddr = address, filesz, memsz, RWX.
        put(UInt32(1), 52); put(UInt32(0x100), 56); put(address, 60); put(address, 64)
        put(UInt32(code.count), 68); put(memorySize, 72); put(UInt32(7), 76); put(UInt32(0x1000), 80)
        // Multiboot header: magic, flags (page-aligned modules, memory info), checksum.
        let magic: UInt32 = 0x1BAD_B002, flags: UInt32 = 3
        put(magic, 0x60); put(flags, 0x64); put(0 &- magic &- flags, 0x68)
        return b + code
    }

    static func write(_ bytes: [UInt8], name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("visor-\(name)-\(getpid()).elf")
        try Data(bytes).write(to: url)
        return url
    }

    @Test("a kernel at 0x8000 over the usual boot stack and information boots on interp",
          arguments: [(UInt32(0x8000), UInt32(0x2000)), (0x1000, 0x9_f000)])
    func bootsOnInterp(address: UInt32, size: UInt32) throws {
        let file = try Self.write(Self.kernel(at: address, memorySize: size), name: "low-kernel-\(address)")
        defer { try? FileManager.default.removeItem(at: file) }
        let r = try runVisor(["run", "--engine", "interp", file.path, "--cmdline", "low kernel ok"])
        #expect(r.stdout == "low kernel ok\n", "stderr: \(r.stderr)")
        #expect(r.status == 0)
    }

    @Test("the same kernel boots on kvm", .enabled(if: Host.kvmAvailable, "needs /dev/kvm"))
    func bootsOnKVM() throws {
        let file = try Self.write(Self.kernel(at: 0x8000, memorySize: 0x2000), name: "low-kernel-kvm")
        defer { try? FileManager.default.removeItem(at: file) }
        let r = try runVisor(["run", "--engine", "kvm", file.path, "--cmdline", "low kernel ok"])
        #expect(r.stdout == "low kernel ok\n", "stderr: \(r.stderr)")
        #expect(r.status == 0)
    }

    @Test("a kernel in the PC's reserved hole is refused with status 65, saying so")
    func refusedInTheHole() throws {
        let file = try Self.write(Self.kernel(at: 0xb_8000, memorySize: 0x1000), name: "hole-kernel")
        defer { try? FileManager.default.removeItem(at: file) }
        let r = try runVisor(["run", "--engine", "interp", file.path])
        #expect(r.status == 65)
        #expect(r.stderr.contains("segment 0 at 0xb8000 (0x1000 bytes) overlaps the PC's reserved hole [0xa0000, 0x100000)"),
                "stderr: \(r.stderr)")
    }
}
