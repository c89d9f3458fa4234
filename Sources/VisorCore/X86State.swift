// Engine-neutral x86-64 architectural state: what a boot protocol sets and a crash report shows.

/// One segment register, in the descriptor-cache form engines keep it in.
public struct SegmentRegister: Sendable, Equatable {
    public var selector: UInt16
    public var base: UInt64
    public var limit: UInt32
    /// Descriptor type (4 bits: for code, bit 3 set; bit 1 readable/writable; bit 0 accessed).
    public var type: UInt8
    /// S: code or data (true) rather than system.
    public var isCodeOrData: Bool
    public var dpl: UInt8
    public var present: Bool
    /// L: a 64-bit code segment.
    public var longMode: Bool
    /// D/B: default operation size 32 bits.
    public var defaultSize32: Bool
    /// G: limit in 4 KiB units.
    public var granularity4K: Bool

    public init(selector: UInt16 = 0, base: UInt64 = 0, limit: UInt32 = 0xffff, type: UInt8 = 3,
                isCodeOrData: Bool = true, dpl: UInt8 = 0, present: Bool = true, longMode: Bool = false,
                defaultSize32: Bool = false, granularity4K: Bool = false) {
        self.selector = selector; self.base = base; self.limit = limit; self.type = type
        self.isCodeOrData = isCodeOrData; self.dpl = dpl; self.present = present
        self.longMode = longMode; self.defaultSize32 = defaultSize32; self.granularity4K = granularity4K
    }

    /// A flat 4 GiB ring-0 code segment: 32-bit, or 64-bit when `longMode`.
    public static func flatCode(selector: UInt16, longMode: Bool) -> SegmentRegister {
        SegmentRegister(selector: selector, base: 0, limit: 0xffff_ffff, type: 0xb, longMode: longMode,
                        defaultSize32: !longMode, granularity4K: true)
    }

    /// A flat 4 GiB ring-0 read/write data segment.
    public static func flatData(selector: UInt16) -> SegmentRegister {
        SegmentRegister(selector: selector, base: 0, limit: 0xffff_ffff, type: 0x3, defaultSize32: true,
                        granularity4K: true)
    }

    /// A 64-bit TSS descriptor cache (busy TSS, type 0xb), as a loader points TR at.
    public static func taskState(selector: UInt16, base: UInt64, limit: UInt32) -> SegmentRegister {
        SegmentRegister(selector: selector, base: base, limit: limit, type: 0xb, isCodeOrData: false)
    }
}

/// A descriptor-table register (GDTR, IDTR).
public struct DescriptorTableRegister: Sendable, Equatable {
    public var base: UInt64
    public var limit: UInt16
    public init(base: UInt64 = 0, limit: UInt16 = 0xffff) { self.base = base; self.limit = limit }
}

/// Architectural bits Visor sets or reports by name.
public enum X86 {
    public static let cr0ProtectionEnable: UInt64 = 1 << 0
    public static let cr0MonitorCoprocessor: UInt64 = 1 << 1
    public static let cr0ExtensionType: UInt64 = 1 << 4
    public static let cr0NumericError: UInt64 = 1 << 5
    public static let cr0WriteProtect: UInt64 = 1 << 16
    public static let cr0Paging: UInt64 = 1 << 31
    public static let cr4PAE: UInt64 = 1 << 5
    public static let cr4OSFXSR: UInt64 = 1 << 9
    public static let cr4OSXMMEXCPT: UInt64 = 1 << 10
    public static let eferSCE: UInt64 = 1 << 0
    public static let eferLME: UInt64 = 1 << 8
    public static let eferLMA: UInt64 = 1 << 10
    public static let eferNXE: UInt64 = 1 << 11
    /// RFLAGS bit 1 always reads as one.
    public static let rflagsReserved1: UInt64 = 1 << 1
    public static let rflagsInterruptEnable: UInt64 = 1 << 9
}

/// The registers of one vCPU that boot protocols set and crash reports print.
public struct X86State: Sendable, Equatable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0xfff0
    public var rflags: UInt64 = X86.rflagsReserved1

    public var cs = SegmentRegister(selector: 0xf000, base: 0xffff_0000, type: 0xb)
    public var ds = SegmentRegister(), es = SegmentRegister(), fs = SegmentRegister()
    public var gs = SegmentRegister(), ss = SegmentRegister()
    public var tr = SegmentRegister(type: 0xb, isCodeOrData: false)
    public var ldtr = SegmentRegister(type: 2, isCodeOrData: false)
    public var gdtr = DescriptorTableRegister()
    public var idtr = DescriptorTableRegister()

    public var cr0: UInt64 = 0x6000_0010
    public var cr2: UInt64 = 0
    public var cr3: UInt64 = 0
    public var cr4: UInt64 = 0
    public var cr8: UInt64 = 0
    public var efer: UInt64 = 0

    /// The debug registers (DR4 and DR5 are aliases of DR6 and DR7), at their RESET values: part
    /// of the state so that a breakpoint or DR6's status survives whatever reads and writes a
    /// vCPU's registers.
    public var dr0: UInt64 = 0, dr1: UInt64 = 0, dr2: UInt64 = 0, dr3: UInt64 = 0
    public var dr6: UInt64 = 0xffff_0ff0, dr7: UInt64 = 0x400

    /// The state of an x86 CPU after RESET (real mode at `f000:fff0`).
    public init() {}

    /// A multi-line register dump in the layout of Xen's and QEMU's crash reports.
    public var dump: String {
        func h(_ v: UInt64) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, 16 - s.count)) + s
        }
        func seg(_ name: String, _ s: SegmentRegister) -> String {
            "\(name)=\(String(s.selector, radix: 16)) base=\(h(s.base)) limit=\(String(s.limit, radix: 16)) type=\(s.type) dpl=\(s.dpl)\(s.longMode ? " L" : "")\(s.defaultSize32 ? " D" : "")"
        }
        return """
            rax=\(h(rax)) rbx=\(h(rbx)) rcx=\(h(rcx)) rdx=\(h(rdx))
            rsi=\(h(rsi)) rdi=\(h(rdi)) rbp=\(h(rbp)) rsp=\(h(rsp))
            r8 =\(h(r8)) r9 =\(h(r9)) r10=\(h(r10)) r11=\(h(r11))
            r12=\(h(r12)) r13=\(h(r13)) r14=\(h(r14)) r15=\(h(r15))
            rip=\(h(rip)) rflags=\(h(rflags))
            cr0=\(h(cr0)) cr2=\(h(cr2)) cr3=\(h(cr3)) cr4=\(h(cr4)) efer=\(h(efer))
            \(seg("cs", cs)) \(seg("ss", ss))
            \(seg("ds", ds)) \(seg("es", es))
            gdt=\(h(gdtr.base))/\(String(gdtr.limit, radix: 16)) idt=\(h(idtr.base))/\(String(idtr.limit, radix: 16))
            """
    }
}
