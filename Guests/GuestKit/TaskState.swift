// A 64-bit TSS for guests that run code at CPL3 and take interrupts or system calls from there.

extension GuestKit {
    /// The TSS's size: the 104-byte segment, an I/O permission bitmap for all 65536 ports, and
    /// the bitmap's terminating 0xff byte.
    public static let taskStateBytes = 104 + 8192 + 1

    /// Copies the boot GDT (Boot/multiboot.S: 0x08 kernel code, 0x10 kernel data, 0x18 user
    /// data, 0x20 user code, 0x38 the trampoline's 32-bit code) to new memory, puts a 64-bit
    /// TSS at selector 0x28, loads both and returns the TSS, whose RSP0 (byte offset 4) is
    /// `kernelStackTop` (0: the caller sets it later). The I/O bitmap allows every port:
    /// hardware ignores it at CPL0 and with IOPL 3, but KVM's PVM backend checks it for port
    /// I/O after an entry from user mode.
    @discardableResult
    public static func installTaskState(kernelStackTop: UInt64 = 0) -> UnsafeMutableRawPointer {
        let gdt = UnsafeMutablePointer<UInt64>.allocate(capacity: 8)
        guard let boot = UnsafePointer<UInt64>(bitPattern: UInt(gk_boot_gdt_base())) else { haltForever() }
        for i in 0..<8 { gdt[i] = boot[i] }
        let tss = UnsafeMutableRawPointer.allocate(byteCount: taskStateBytes, alignment: 4096)
        tss.initializeMemory(as: UInt8.self, repeating: 0, count: taskStateBytes)
        tss.storeBytes(of: UInt8(0xff), toByteOffset: taskStateBytes - 1, as: UInt8.self)
        tss.storeBytes(of: kernelStackTop, toByteOffset: 4, as: UInt64.self)
        tss.storeBytes(of: UInt16(104), toByteOffset: 102, as: UInt16.self)  // the bitmap follows
        let base = UInt64(UInt(bitPattern: tss)), limit = UInt64(taskStateBytes - 1)
        gdt[5] = (limit & 0xffff) | ((base & 0xff_ffff) << 16) | (0x89 << 40) | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56)
        gdt[6] = base >> 32
        var gdtr: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &gdtr) { raw in
            raw.storeBytes(of: UInt16(8 * 8 - 1), toByteOffset: 0, as: UInt16.self)
            raw.storeBytes(of: UInt64(UInt(bitPattern: gdt)), toByteOffset: 2, as: UInt64.self)
            gk_load_gdt_and_tss(raw.baseAddress)
        }
        return tss
    }
}
