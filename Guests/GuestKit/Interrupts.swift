// Interrupts: the IDT (256 interrupt gates onto the stubs in isr.S), a handler per vector,
// exceptions that print and end the guest, and IF control.
//
// Gates are written lazily: `setUp()` fills the 32 exception vectors and the APIC's spurious
// vector; `register` fills the others as guests claim them (each gate is a few CPL0
// instructions, slow on PVM). A vector nobody registered is not present, so a stray interrupt
// raises #GP (a zero gate is not a valid gate type), which the exception handler reports with
// the vector in the error code (TCG reports index * 2 there: vector * 16 + 2).
// Handlers run at CPL0 with IF = 0 on the interrupted stack (from CPL3: on the TSS's RSP0); they
// should be short. Interrupts are taken at CPL3 only by guests that load a TSS and enter user
// mode interruptible (`GuestKit.enterUserMode(_:interruptible: true)`, minios, cpuhog).

/// The frame an interrupt handler receives (see isr.S for the layout).
public struct InterruptFrame {
    public let raw: UnsafeMutablePointer<UInt64>
    public init(_ raw: UnsafeMutablePointer<UInt64>) { self.raw = raw }
    public var vector: UInt64 { raw[9] }
    public var errorCode: UInt64 { raw[10] }
    public var rip: UInt64 {
        get { raw[11] }
        nonmutating set { raw[11] = newValue }
    }
    public var cs: UInt64 { raw[12] }
    public var rflags: UInt64 { raw[13] }
    public var rsp: UInt64 { raw[14] }
    public var ss: UInt64 { raw[15] }
    public var rax: UInt64 {
        get { raw[8] }
        nonmutating set { raw[8] = newValue }
    }
}

/// A handler: a C-ABI function (a Swift closure that captures nothing converts to one).
public typealias InterruptHandler = @convention(c) (UnsafeMutablePointer<UInt64>) -> Void

public enum Interrupts {
    /// Vectors GuestKit uses itself.
    public static let timerVector: UInt32 = 0xef     // `Timer` (sleep and its one-shots)
    public static let wakeVector: UInt32 = 0xee      // a no-op IPI that only ends an `hlt`
    public static let spuriousVector: UInt32 = 0xff  // the APIC's spurious vector (no EOI)
    /// Where the 8259s are remapped before they are masked (their spurious IRQs 7 and 15).
    public static let picBase: UInt32 = 0x20

    nonisolated(unsafe) private static var ready = false

    /// Masks the 8259s, fills the exception gates and loads the IDT. Idempotent.
    public static func setUp() {
        if ready {
            load()
            return
        }
        PIC.maskAll()
        for v in UInt32(0)..<32 { register(vector: v, handler: guestkitExceptionHandler) }
        register(vector: spuriousVector) { _ in }
        register(vector: wakeVector) { _ in }
        register(vector: picBase + 7) { _ in }      // 8259 spurious IRQs, if LINT0 lets any through
        register(vector: picBase + 15) { _ in }
        ready = true
        load()
    }

    /// Loads the IDT register (every CPU does this once).
    public static func load() {
        gk_lidt(gk_idt_address(), 4095)
    }

    /// Installs `handler` for `vector` and makes its gate present.
    public static func register(vector: UInt32, handler: InterruptHandler) {
        let v = vector & 0xff
        gk_set_vector_handler(v, handler)
        setGate(vector: v, entry: gk_isr_stub_address(v))
    }

    /// Points `vector`'s gate at an entry of the guest's own (an interrupt gate: present,
    /// selector 0x08, IST 0; DPL 0, or 3 so that CPL3 code may raise it, e.g. with `int3`),
    /// bypassing the stubs of isr.S and their EOI.
    public static func setGate(vector: UInt32, entry address: UInt64, dpl: UInt64 = 0) {
        let gate = UnsafeMutablePointer<UInt64>(bitPattern: UInt(gk_idt_address()) + UInt(vector & 0xff) * 16)!
        let type: UInt64 = 0x8e | (dpl & 3) << 5
        gate[0] = (address & 0xffff) | (0x08 << 16) | (type << 40) | ((address >> 16) & 0xffff) << 48
        gate[1] = address >> 32
    }

    /// Removes the handler (the gate stays; a later interrupt ends the guest as unhandled).
    public static func unregister(vector: UInt32) { gk_set_vector_handler(vector & 0xff, nil) }

    @inline(__always) public static func enable() { gk_sti() }
    @inline(__always) public static func disable() { gk_cli() }
    public static var areEnabled: Bool { gk_read_rflags() & (1 << 9) != 0 }

    /// `sti; hlt` (the STI shadow covers HLT, so nothing pending is lost), then `cli`: returns
    /// with interrupts disabled after at least one interrupt was handled. The pattern is
    /// `disable(); while !condition { waitForInterrupt() }`.
    @inline(__always) public static func waitForInterrupt() {
        gk_sti_hlt()
        gk_cli()
    }

    static func exceptionName(_ vector: UInt64) -> StaticString {
        switch vector {
        case 0: return "#DE divide error"
        case 1: return "#DB debug"
        case 2: return "NMI"
        case 3: return "#BP breakpoint"
        case 4: return "#OF overflow"
        case 5: return "#BR bound range"
        case 6: return "#UD invalid opcode"
        case 7: return "#NM device not available"
        case 8: return "#DF double fault"
        case 10: return "#TS invalid TSS"
        case 11: return "#NP segment not present"
        case 12: return "#SS stack fault"
        case 13: return "#GP general protection"
        case 14: return "#PF page fault"
        case 16: return "#MF x87 error"
        case 17: return "#AC alignment check"
        case 18: return "#MC machine check"
        case 19: return "#XM SIMD exception"
        default: return "reserved exception"
        }
    }
}

/// Exit status of a guest ended by an unexpected exception or interrupt.
public let unexpectedExceptionStatus: UInt32 = 0x7e

/// Vectors 0-31: print the vector, error code and RIP, and end the guest with a failure.
let guestkitExceptionHandler: InterruptHandler = { raw in
    let frame = InterruptFrame(raw)
    let v = frame.vector
    put("guestkit: exception ")
    put(v)
    put(" (")
    put(Interrupts.exceptionName(v))
    put(") error=")
    putHex(frame.errorCode, digits: 4)
    put(" rip=")
    putHex(frame.rip, digits: 16)
    put(" rsp=")
    putHex(frame.rsp, digits: 16)
    if v == 14 {
        put(" cr2=")
        putHex(gk_read_cr2(), digits: 16)
    }
    if v == 11 || v == 13, frame.errorCode & 2 != 0 {
        put(" (IDT vector ")
        put(frame.errorCode >> 3)
        put(")")
    }
    put(" cpu ")
    put(gk_cpu_index())
    putLine()
    GuestKit.exit(unexpectedExceptionStatus)
}

/// Called by isr.S for a present gate with no handler (unregistered since).
@_cdecl("guestkit_unhandled_vector")
public func guestkitUnhandledVector(_ raw: UnsafeMutablePointer<UInt64>) {
    let frame = InterruptFrame(raw)
    put("guestkit: unhandled interrupt vector ")
    put(frame.vector)
    put(" rip=")
    putHex(frame.rip, digits: 16)
    put(" cpu ")
    put(gk_cpu_index())
    putLine()
    GuestKit.exit(unexpectedExceptionStatus)
}

/// The two 8259s: remapped to `Interrupts.picBase` (so a spurious IRQ cannot look like an
/// exception) and fully masked. GuestKit uses the local APIC only.
public enum PIC {
    public static func maskAll() {
        let base = UInt8(Interrupts.picBase)
        gk_outb(0x20, 0x11)         // ICW1: edge, cascade, ICW4 follows
        gk_outb(0xa0, 0x11)
        gk_outb(0x21, base)         // ICW2: vector base
        gk_outb(0xa1, base + 8)
        gk_outb(0x21, 0x04)         // ICW3: slave on IRQ2
        gk_outb(0xa1, 0x02)
        gk_outb(0x21, 0x01)         // ICW4: 8086 mode
        gk_outb(0xa1, 0x01)
        gk_outb(0x21, 0xff)         // OCW1: mask everything
        gk_outb(0xa1, 0xff)
    }
}
