// Hand-written decode vectors: bytes and the complete DecodedInstruction expected, across the
// three modes. Each vector compares the whole struct, so a wrong size, operand, memory field,
// immediate or prefix fails it.

import Testing
@testable import VisorX86Decode

/// Parses "48 8b 05 10 00 00 00".
func hexBytes(_ text: String) -> [UInt8] {
    text.split(separator: " ").compactMap { UInt8($0, radix: 16) }
}

/// Builds the expected instruction.
func I(_ op: Operation, _ length: UInt8, os: UInt8 = 4, asz: UInt8 = 8, cond: UInt8 = 0, dst: Operand = .none,
       src: Operand = .none, src2: Operand = .none, mem: MemoryOperand = MemoryOperand(), imm: UInt64 = 0,
       imm2: UInt64 = 0, rex: UInt8 = 0, lock: Bool = false, seg: UInt8? = nil, rep: Prefixes.Repeat = .none)
    -> DecodeResult
{
    var p = Prefixes()
    p.rex = rex; p.lock = lock; p.segmentOverride = seg; p.repetition = rep
    return .instruction(DecodedInstruction(operation: op, length: length, operandSize: os, addressSize: asz,
                                           condition: cond, destination: dst, source: src, source2: src2,
                                           memory: mem, immediate: imm, immediate2: imm2, prefixes: p))
}

func r(_ i: UInt8, _ s: UInt8) -> Operand { .register(i, size: s) }
func hb(_ i: UInt8) -> Operand { Operand(.highByte, index: i, size: 1) }
func m(_ s: UInt8) -> Operand { .memory(size: s) }
func imm(_ s: UInt8) -> Operand { .immediate(size: s) }
func x(_ i: UInt8, _ s: UInt8 = 16) -> Operand { Operand(.xmm, index: i, size: s) }
func sreg(_ i: UInt8, _ s: UInt8 = 2) -> Operand { Operand(.segment, index: i, size: s) }
func mm(_ i: UInt8, _ s: UInt8 = 8) -> Operand { Operand(.mmx, index: i, size: s) }
func st(_ i: UInt8) -> Operand { Operand(.x87, index: i, size: 10) }
func mem(seg: UInt8 = 3, base: UInt8 = MemoryOperand.noRegister, index: UInt8 = MemoryOperand.noRegister,
         scale: UInt8 = 1, disp: Int64 = 0) -> MemoryOperand {
    MemoryOperand(segment: seg, base: base, index: index, scale: scale, displacement: disp)
}
let rip = MemoryOperand.ripRelative
let minus1: UInt64 = .max
let cl = Operand(.register, index: 1, size: 1)

struct Vector: Sendable, CustomTestStringConvertible {
    var bytes: String
    var mode: CodeMode
    var expected: DecodeResult
    var note: String
    init(_ bytes: String, _ mode: CodeMode, _ expected: DecodeResult, _ note: String = "") {
        self.bytes = bytes; self.mode = mode; self.expected = expected; self.note = note
    }
    /// A 64-bit-mode vector.
    init(_ bytes: String, _ expected: DecodeResult, _ note: String = "") {
        self.init(bytes, .bits64, expected, note)
    }
    var testDescription: String { "\(mode) [\(bytes)] \(note)" }
}

let vectors64: [Vector] = [
    // ALU forms, REX, high bytes.
    Vector("48 01 d8", I(.add, 3, os: 8, dst: r(0, 8), src: r(3, 8), rex: 0x48), "add rax,rbx"),
    Vector("00 e0", I(.add, 2, os: 1, dst: r(0, 1), src: hb(0)), "add al,ah"),
    Vector("40 00 e0", I(.add, 3, os: 1, dst: r(0, 1), src: r(4, 1), rex: 0x40), "add al,spl"),
    Vector("45 30 c8", I(.xor, 3, os: 1, dst: r(8, 1), src: r(9, 1), rex: 0x45), "xor r8b,r9b"),
    Vector("2a 27", I(.sub, 2, os: 1, dst: hb(0), src: m(1), mem: mem(base: 7)), "sub ah,[rdi]"),
    Vector("04 7f", I(.add, 2, os: 1, dst: r(0, 1), src: imm(1), imm: 0x7f), "add al,0x7f"),
    Vector("48 2d 00 00 00 80", I(.sub, 6, os: 8, dst: r(0, 8), src: imm(8), imm: 0xffff_ffff_8000_0000, rex: 0x48),
           "sub rax,imm32 sign-extended"),
    Vector("25 00 00 00 80", I(.and, 5, dst: r(0, 4), src: imm(4), imm: 0x8000_0000), "and eax,imm32"),
    Vector("66 3d 34 12", I(.cmp, 4, os: 2, dst: r(0, 2), src: imm(2), imm: 0x1234), "cmp ax,imm16"),
    Vector("83 c0 ff", I(.add, 3, dst: r(0, 4), src: imm(4), imm: minus1), "83 /0 sign-extends"),
    Vector("66 83 c0 80", I(.add, 4, os: 2, dst: r(0, 2), src: imm(2), imm: 0xffff_ffff_ffff_ff80), "add ax,-128"),
    Vector("48 83 7d f8 00", I(.cmp, 5, os: 8, dst: m(8), src: imm(8), mem: mem(seg: 2, base: 5, disp: -8), rex: 0x48),
           "cmp qword [rbp-8],0"),
    Vector("80 fc 10", I(.cmp, 3, os: 1, dst: hb(0), src: imm(1), imm: 0x10), "cmp ah,0x10"),
    Vector("48 81 e4 f0 ff ff ff", I(.and, 7, os: 8, dst: r(4, 8), src: imm(8), imm: 0xffff_ffff_ffff_fff0, rex: 0x48),
           "and rsp,-16"),
    Vector("48 85 c0", I(.test, 3, os: 8, dst: r(0, 8), src: r(0, 8), rex: 0x48), "test rax,rax"),
    Vector("f6 c4 01", I(.test, 3, os: 1, dst: hb(0), src: imm(1), imm: 1), "test ah,1 (group 3)"),
    Vector("48 f7 c1 ff 00 00 00", I(.test, 7, os: 8, dst: r(1, 8), src: imm(8), imm: 0xff, rex: 0x48), "test rcx,0xff"),

    // Memory forms: RIP-relative, SIB, segments.
    Vector("48 8b 05 10 00 00 00", I(.mov, 7, os: 8, dst: r(0, 8), src: m(8), mem: mem(base: rip, disp: 16), rex: 0x48),
           "mov rax,[rip+16]"),
    Vector("67 8b 05 f0 ff ff ff", I(.mov, 7, asz: 4, dst: r(0, 4), src: m(4), mem: mem(base: rip, disp: -16)),
           "mov eax,[eip-16]"),
    Vector("8b 04 24", I(.mov, 3, dst: r(0, 4), src: m(4), mem: mem(seg: 2, base: 4)), "mov eax,[rsp]"),
    Vector("8b 44 8d f0", I(.mov, 4, dst: r(0, 4), src: m(4), mem: mem(seg: 2, base: 5, index: 1, scale: 4, disp: -16)),
           "mov eax,[rbp+rcx*4-16]"),
    Vector("42 8b 04 25 00 10 00 00", I(.mov, 8, dst: r(0, 4), src: m(4), mem: mem(index: 12, disp: 0x1000), rex: 0x42),
           "SIB index r12, no base"),
    Vector("8b 04 25 00 10 00 00", I(.mov, 7, dst: r(0, 4), src: m(4), mem: mem(disp: 0x1000)), "absolute [disp32]"),
    Vector("41 8b 45 00", I(.mov, 4, dst: r(0, 4), src: m(4), mem: mem(base: 13), rex: 0x41), "[r13+0] is DS"),
    Vector("41 8b 04 24", I(.mov, 4, dst: r(0, 4), src: m(4), mem: mem(base: 12), rex: 0x41), "[r12] via SIB is DS"),
    Vector("43 8b 44 fd 08", I(.mov, 5, dst: r(0, 4), src: m(4), mem: mem(base: 13, index: 15, scale: 8, disp: 8),
                                 rex: 0x43), "[r13+r15*8+8]"),
    Vector("4a 8d 04 e5 00 00 00 00", I(.lea, 8, os: 8, dst: r(0, 8), src: m(0), mem: mem(index: 12, scale: 8), rex: 0x4a),
           "lea rax,[r12*8]"),
    Vector("64 48 8b 04 25 28 00 00 00", I(.mov, 9, os: 8, dst: r(0, 8), src: m(8), mem: mem(seg: 4, disp: 0x28), rex: 0x48,
                                           seg: 4), "mov rax,fs:[0x28]"),
    Vector("65 48 8b 04 24", I(.mov, 5, os: 8, dst: r(0, 8), src: m(8), mem: mem(seg: 5, base: 4), rex: 0x48, seg: 5),
           "gs override beats the SS default"),
    Vector("2e 8b 00", I(.mov, 3, dst: r(0, 4), src: m(4), mem: mem(base: 0)), "CS override ignored in 64-bit mode"),
    Vector("36 8b 00", I(.mov, 3, dst: r(0, 4), src: m(4), mem: mem(base: 0)), "SS override ignored in 64-bit mode"),
    Vector("48 a1 88 77 66 55 44 33 22 11",
           I(.mov, 10, os: 8, dst: r(0, 8), src: m(8), mem: mem(disp: 0x1122_3344_5566_7788), rex: 0x48), "movabs rax,[moffs64]"),
    Vector("67 a2 00 10 00 00", I(.mov, 6, os: 1, asz: 4, dst: m(1), src: r(0, 1), mem: mem(disp: 0x1000)), "mov [moffs32],al"),

    // Prefix order: a REX followed by a legacy prefix is ignored.
    Vector("48 66 01 c0", I(.add, 4, os: 2, dst: r(0, 2), src: r(0, 2)), "REX before 66 is ignored"),
    Vector("66 48 01 c0", I(.add, 4, os: 8, dst: r(0, 8), src: r(0, 8), rex: 0x48), "REX.W beats 66"),
    Vector("41 48 01 c0", I(.add, 4, os: 8, dst: r(0, 8), src: r(0, 8), rex: 0x48), "the last REX counts"),

    // LOCK.
    Vector("f0 48 0f b1 0f", I(.cmpxchg, 5, os: 8, dst: m(8), src: r(1, 8), mem: mem(base: 7), rex: 0x48, lock: true),
           "lock cmpxchg [rdi],rcx"),
    Vector("f0 0f c1 02", I(.xadd, 4, dst: m(4), src: r(0, 4), mem: mem(base: 2), lock: true), "lock xadd [rdx],eax"),
    Vector("f0 ff 0d 2b c0 1a 00", I(.dec, 7, dst: m(4), mem: mem(base: rip, disp: 0x1ac02b), lock: true), "lock dec [rip+x]"),
    Vector("f0 0f ba 28 03", I(.bts, 5, dst: m(4), src: imm(1), mem: mem(base: 0), imm: 3, lock: true), "lock bts [rax],3"),
    Vector("f0 01 c0", .undefined, "lock with a register destination"),
    Vector("f0 87 03", I(.xchg, 3, dst: m(4), src: r(0, 4), mem: mem(base: 3), lock: true), "lock xchg [rbx],eax"),
    Vector("f0 86 c0", .undefined, "lock xchg registers"),
    Vector("f0 f7 1f", I(.neg, 3, dst: m(4), mem: mem(base: 7), lock: true), "lock neg [rdi]"),
    Vector("f0 f7 27", .undefined, "lock mul"),
    Vector("f0 66 0f ef c0", .undefined, "lock pxor"),
    Vector("f0 39 00", .undefined, "lock cmp"),
    Vector("f0 8b 00", .undefined, "lock mov"),
    Vector("f0 0f a3 00", .undefined, "lock bt"),

    // Moves and immediates.
    Vector("48 b8 88 77 66 55 44 33 22 11", I(.mov, 10, os: 8, dst: r(0, 8), src: imm(8), imm: 0x1122_3344_5566_7788, rex: 0x48),
           "movabs rax,imm64"),
    Vector("b8 ff ff ff ff", I(.mov, 5, dst: r(0, 4), src: imm(4), imm: 0xffff_ffff), "mov eax,imm32 zero-extended"),
    Vector("48 c7 c0 ff ff ff ff", I(.mov, 7, os: 8, dst: r(0, 8), src: imm(8), imm: minus1, rex: 0x48), "mov rax,-1 (Iz)"),
    Vector("b4 0e", I(.mov, 2, os: 1, dst: hb(0), src: imm(1), imm: 0x0e), "mov ah,0x0e"),
    Vector("41 b7 01", I(.mov, 3, os: 1, dst: r(15, 1), src: imm(1), imm: 1, rex: 0x41), "mov r15b,1"),
    Vector("c6 00 05", I(.mov, 3, os: 1, dst: m(1), src: imm(1), mem: mem(base: 0), imm: 5), "mov byte [rax],5"),
    Vector("66 c7 44 24 fe 34 12", I(.mov, 7, os: 2, dst: m(2), src: imm(2), mem: mem(seg: 2, base: 4, disp: -2), imm: 0x1234),
           "disp8 then imm16"),
    Vector("c6 f8 00", .undefined, "xabort (group 11 /7)"),
    Vector("0f b6 c1", I(.movzx, 3, dst: r(0, 4), src: r(1, 1)), "movzx eax,cl"),
    Vector("0f be c4", I(.movsx, 3, dst: r(0, 4), src: hb(0)), "movsx eax,ah"),
    Vector("48 0f be c4", I(.movsx, 4, os: 8, dst: r(0, 8), src: r(4, 1), rex: 0x48), "movsx rax,spl"),
    Vector("0f b7 06", I(.movzx, 3, dst: r(0, 4), src: m(2), mem: mem(base: 6)), "movzx eax,word [rsi]"),
    Vector("48 63 c1", I(.movsx, 3, os: 8, dst: r(0, 8), src: r(1, 4), rex: 0x48), "movsxd rax,ecx"),
    Vector("8c d8", I(.movSegment, 2, dst: r(0, 4), src: sreg(3)), "mov eax,ds"),
    Vector("8c 18", I(.movSegment, 2, os: 2, dst: m(2), src: sreg(3), mem: mem(base: 0)), "mov [rax],ds"),
    Vector("8e d8", I(.movSegment, 2, os: 2, dst: sreg(3), src: r(0, 2)), "mov ds,ax"),
    Vector("8e c8", .undefined, "mov cs,ax"),
    Vector("8e f0", .undefined, "mov sreg 6"),
    Vector("8d 04 40", I(.lea, 3, dst: r(0, 4), src: m(0), mem: mem(base: 0, index: 0, scale: 2)), "lea eax,[rax+rax*2]"),
    Vector("8d c0", .undefined, "lea with a register"),
    Vector("d7", I(.xlat, 1, os: 1, dst: r(0, 1), mem: mem(base: 3)), "xlat"),
    Vector("98", I(.signExtendAccumulator, 1), "cwde"),
    Vector("48 98", I(.signExtendAccumulator, 2, os: 8, rex: 0x48), "cdqe"),
    Vector("48 99", I(.signExtendIntoDX, 2, os: 8, rex: 0x48), "cqo"),
    Vector("49 0f c8", I(.bswap, 3, os: 8, dst: r(8, 8), rex: 0x49), "bswap r8"),

    // XCHG / NOP / PAUSE.
    Vector("90", I(.nop, 1), "nop"),
    Vector("66 90", I(.nop, 2, os: 2), "xchg ax,ax = nop"),
    Vector("48 90", I(.nop, 2, os: 8, rex: 0x48), "rex.w nop"),
    Vector("f3 90", I(.pause, 2), "pause"),
    Vector("41 90", I(.xchg, 2, dst: r(8, 4), src: r(0, 4), rex: 0x41), "xchg r8d,eax"),
    Vector("93", I(.xchg, 1, dst: r(3, 4), src: r(0, 4)), "xchg ebx,eax"),
    Vector("87 c8", I(.xchg, 2, dst: r(0, 4), src: r(1, 4)), "xchg eax,ecx"),
    Vector("0f 1f 44 00 00", I(.nop, 5, mem: mem(base: 0, index: 0)), "5-byte nop"),
    Vector("66 2e 0f 1f 84 00 00 00 00 00", I(.nop, 10, os: 2, mem: mem(base: 0, index: 0)), "nopw cs:[rax+rax]"),
    Vector("f3 0f 1e fa", I(.nop, 4), "endbr64"),
    Vector("0f 18 08", I(.nop, 3, mem: mem(base: 0)), "prefetcht0"),
    Vector("0f 0d 08", I(.nop, 3, mem: mem(base: 0)), "prefetchw"),
    Vector("0f 0d c8", .undefined, "prefetchw with a register"),
    Vector("9b", I(.fwait, 1), "fwait"),

    // Shifts, rotates, multiplies, bit operations.
    Vector("c1 e0 04", I(.shl, 3, dst: r(0, 4), src: imm(1), imm: 4), "shl eax,4"),
    Vector("d1 e8", I(.shr, 2, dst: r(0, 4), src: imm(1), imm: 1), "shr eax,1"),
    Vector("d0 e4", I(.shl, 2, os: 1, dst: hb(0), src: imm(1), imm: 1), "shl ah,1"),
    Vector("d3 f8", I(.sar, 2, dst: r(0, 4), src: cl), "sar eax,cl"),
    Vector("48 d3 c2", I(.rol, 3, os: 8, dst: r(2, 8), src: cl, rex: 0x48), "rol rdx,cl"),
    Vector("c0 1f 03", I(.rcr, 3, os: 1, dst: m(1), src: imm(1), mem: mem(base: 7), imm: 3), "rcr byte [rdi],3"),
    Vector("48 0f af c1", I(.imul, 4, os: 8, dst: r(0, 8), src: r(1, 8), src2: r(0, 8), rex: 0x48), "imul rax,rcx"),
    Vector("6b c0 f6", I(.imul, 3, dst: r(0, 4), src: r(0, 4), src2: imm(4), imm: 0xffff_ffff_ffff_fff6), "imul eax,eax,-10"),
    Vector("69 c0 e8 03 00 00", I(.imul, 6, dst: r(0, 4), src: r(0, 4), src2: imm(4), imm: 1000), "imul eax,eax,1000"),
    Vector("f6 f1", I(.div, 2, os: 1, src: r(1, 1)), "div cl"),
    Vector("48 f7 e1", I(.mul, 3, os: 8, src: r(1, 8), rex: 0x48), "mul rcx"),
    Vector("f7 3e", I(.idiv, 2, src: m(4), mem: mem(base: 6)), "idiv dword [rsi]"),
    Vector("f6 eb", I(.imulWide, 2, os: 1, src: r(3, 1)), "imul bl"),
    Vector("f7 d8", I(.neg, 2, dst: r(0, 4)), "neg eax"),
    Vector("fe c4", I(.inc, 2, os: 1, dst: hb(0)), "inc ah"),
    Vector("fe d0", .undefined, "group 4 /2"),
    Vector("0f a4 c2 05", I(.shld, 4, dst: r(2, 4), src: r(0, 4), src2: imm(1), imm: 5), "shld edx,eax,5"),
    Vector("48 0f ad c2", I(.shrd, 4, os: 8, dst: r(2, 8), src: r(0, 8), src2: cl, rex: 0x48), "shrd rdx,rax,cl"),
    Vector("0f ba e0 03", I(.bt, 4, dst: r(0, 4), src: imm(1), imm: 3), "bt eax,3"),
    Vector("0f ba d0 03", .undefined, "group 8 /2"),
    Vector("48 0f a3 c8", I(.bt, 4, os: 8, dst: r(0, 8), src: r(1, 8), rex: 0x48), "bt rax,rcx"),
    Vector("0f bc c1", I(.bsf, 3, dst: r(0, 4), src: r(1, 4)), "bsf"),
    Vector("f3 0f bc c1", I(.tzcnt, 4, dst: r(0, 4), src: r(1, 4)), "tzcnt"),
    Vector("f3 48 0f bd c1", I(.lzcnt, 5, os: 8, dst: r(0, 8), src: r(1, 8), rex: 0x48), "lzcnt rax,rcx"),
    Vector("66 f3 0f b8 c1", I(.popcnt, 5, os: 2, dst: r(0, 2), src: r(1, 2)), "popcnt ax,cx"),
    Vector("0f b8 c1", .undefined, "0F B8 without F3 (JMPE)"),
    Vector("0f 44 c1", I(.cmovcc, 3, cond: 4, dst: r(0, 4), src: r(1, 4)), "cmove eax,ecx"),
    Vector("0f 9f c4", I(.setcc, 3, os: 1, cond: 0xf, dst: hb(0)), "setg ah"),
    Vector("0f 95 c0", I(.setcc, 3, os: 1, cond: 5, dst: r(0, 1)), "setne al"),

    // Stack and control flow.
    Vector("50", I(.push, 1, os: 8, src: r(0, 8)), "push rax"),
    Vector("66 50", I(.push, 2, os: 2, src: r(0, 2)), "push ax"),
    Vector("41 57", I(.push, 2, os: 8, src: r(15, 8), rex: 0x41), "push r15"),
    Vector("5d", I(.pop, 1, os: 8, dst: r(5, 8)), "pop rbp"),
    Vector("6a ff", I(.push, 2, os: 8, src: imm(8), imm: minus1), "push -1"),
    Vector("68 00 10 00 00", I(.push, 5, os: 8, src: imm(8), imm: 0x1000), "push 0x1000"),
    Vector("ff 74 24 08", I(.push, 4, os: 8, src: m(8), mem: mem(seg: 2, base: 4, disp: 8)), "push [rsp+8]"),
    Vector("8f c0", I(.pop, 2, os: 8, dst: r(0, 8)), "pop rax (group 1A)"),
    Vector("8f c8", .undefined, "group 1A /1"),
    Vector("0f a0", I(.push, 2, os: 8, src: sreg(4, 2)), "push fs"),
    Vector("0f a9", I(.pop, 2, os: 8, dst: sreg(5, 2)), "pop gs"),
    Vector("9c", I(.pushf, 1, os: 8), "pushfq"),
    Vector("66 9d", I(.popf, 2, os: 2), "popf"),
    Vector("c9", I(.leave, 1, os: 8), "leave"),
    Vector("c8 10 00 01", I(.enter, 4, os: 8, imm: 16, imm2: 1), "enter 16,1"),
    Vector("c3", I(.ret, 1, os: 8), "ret"),
    Vector("c2 08 00", I(.ret, 3, os: 8, src: imm(2), imm: 8), "ret 8"),
    Vector("48 cb", I(.retFar, 2, os: 8, rex: 0x48), "lretq"),
    Vector("cb", I(.retFar, 1), "lret (32-bit in 64-bit mode)"),
    Vector("48 cf", I(.iret, 2, os: 8, rex: 0x48), "iretq"),
    Vector("e8 00 00 00 00", I(.callRelative, 5, os: 8), "call +0"),
    Vector("e9 fb ff ff ff", I(.jmpRelative, 5, os: 8, imm: 0xffff_ffff_ffff_fffb), "jmp -5"),
    Vector("eb fe", I(.jmpRelative, 2, os: 8, imm: 0xffff_ffff_ffff_fffe), "jmp $"),
    Vector("74 05", I(.jcc, 2, os: 8, cond: 4, imm: 5), "je +5"),
    Vector("0f 8c 10 00 00 00", I(.jcc, 6, os: 8, cond: 0xc, imm: 16), "jl rel32"),
    Vector("66 0f 84 10 00 00 00", I(.jcc, 7, os: 8, cond: 4, imm: 16), "66 is ignored by near jcc"),
    Vector("e2 fe", I(.loop, 2, os: 8, imm: minus1 - 1), "loop"),
    Vector("e0 02", I(.loopNotEqual, 2, os: 8, imm: 2), "loopne"),
    Vector("67 e3 fe", I(.jumpIfCXZero, 3, os: 8, asz: 4, imm: minus1 - 1), "jecxz"),
    Vector("ff d0", I(.callIndirect, 2, os: 8, src: r(0, 8)), "call rax"),
    Vector("41 ff e3", I(.jmpIndirect, 3, os: 8, src: r(11, 8), rex: 0x41), "jmp r11"),
    Vector("ff 25 00 00 00 00", I(.jmpIndirect, 6, os: 8, src: m(8), mem: mem(base: rip)), "jmp [rip]"),
    Vector("ff 1c 24", I(.callFar, 3, src: m(6), mem: mem(seg: 2, base: 4)), "call far m16:32"),
    Vector("48 ff 2c 24", I(.jmpFar, 4, os: 8, src: m(10), mem: mem(seg: 2, base: 4), rex: 0x48), "jmp far m16:64"),
    Vector("ff d8", .undefined, "call far with a register"),
    Vector("ff f8", .undefined, "group 5 /7"),
    Vector("cd 80", I(.int, 2, src: imm(1), imm: 0x80), "int 0x80"),
    Vector("cc", I(.int3, 1), "int3"),
    Vector("f1", I(.int1, 1), "int1"),

    // Strings.
    Vector("f3 48 a5", I(.movs, 3, os: 8, rex: 0x48, rep: .repeatWhileEqual), "rep movsq"),
    Vector("f3 aa", I(.stos, 2, os: 1, mem: mem(seg: 0), rep: .repeatWhileEqual), "rep stosb"),
    Vector("64 aa", I(.stos, 2, os: 1, mem: mem(seg: 0), seg: 4), "stosb: ES:rDI is not overridable"),
    Vector("f2 ae", I(.scas, 2, os: 1, mem: mem(seg: 0), rep: .repeatWhileNotEqual), "repne scasb"),
    Vector("64 a6", I(.cmps, 2, os: 1, mem: mem(seg: 4), seg: 4), "cmpsb fs:"),
    Vector("67 ad", I(.lods, 2, asz: 4), "lodsd with 32-bit addresses"),
    Vector("48 6d", I(.ins, 2, mem: mem(seg: 0), rex: 0x48), "insd ignores REX.W"),
    Vector("f3 6e", I(.outs, 2, os: 1, rep: .repeatWhileEqual), "rep outsb"),

    // I/O.
    Vector("e4 60", I(.in, 2, os: 1, dst: r(0, 1), src: imm(1), imm: 0x60), "in al,0x60"),
    Vector("48 e5 10", I(.in, 3, dst: r(0, 4), src: imm(1), imm: 0x10, rex: 0x48), "in eax,0x10"),
    Vector("e6 80", I(.out, 2, os: 1, dst: imm(1), src: r(0, 1), imm: 0x80), "out 0x80,al"),
    Vector("ec", I(.in, 1, os: 1, dst: r(0, 1), src: r(2, 2)), "in al,dx"),
    Vector("66 ef", I(.out, 2, os: 2, dst: r(2, 2), src: r(0, 2)), "out dx,ax"),

    // System.
    Vector("0f 05", I(.syscall, 2), "syscall"),
    Vector("48 0f 07", I(.sysret, 3, os: 8, rex: 0x48), "sysretq"),
    Vector("0f 0b", I(.ud2, 2), "ud2"),
    Vector("0f b9 c0", .undefined, "ud1"),
    Vector("0f a2", I(.cpuid, 2), "cpuid"),
    Vector("0f 30", I(.wrmsr, 2), "wrmsr"),
    Vector("0f 32", I(.rdmsr, 2), "rdmsr"),
    Vector("0f 31", I(.rdtsc, 2), "rdtsc"),
    Vector("0f 33", I(.rdpmc, 2), "rdpmc"),
    Vector("0f 09", I(.wbinvd, 2), "wbinvd"),
    Vector("0f 06", I(.clts, 2), "clts"),
    Vector("f4", I(.hlt, 1), "hlt"),
    Vector("fa", I(.cli, 1), "cli"),
    Vector("0f 01 f8", I(.swapgs, 3), "swapgs"),
    Vector("0f 01 f9", I(.rdtscp, 3), "rdtscp"),
    Vector("0f 01 c8", I(.monitor, 3), "monitor"),
    Vector("0f 01 c9", I(.mwait, 3), "mwait"),
    Vector("0f 01 ca", I(.clac, 3), "clac (the executor checks CPUID for SMAP)"),
    Vector("0f 01 cb", I(.stac, 3), "stac"),
    Vector("0f 01 fd", .undefined, "rdpru"),
    Vector("0f 01 d0", .undefined, "xgetbv"),
    Vector("0f 01 10", I(.lgdt, 3, os: 8, src: m(10), mem: mem(base: 0)), "lgdt [rax]"),
    Vector("0f 01 0c 24", I(.sidt, 4, os: 8, dst: m(10), mem: mem(seg: 2, base: 4)), "sidt [rsp]"),
    Vector("0f 01 38", I(.invlpg, 3, src: m(1), mem: mem(base: 0)), "invlpg [rax]"),
    Vector("0f 01 e0", I(.smsw, 3, dst: r(0, 4)), "smsw eax"),
    Vector("0f 01 20", I(.smsw, 3, os: 2, dst: m(2), mem: mem(base: 0)), "smsw [rax]"),
    Vector("0f 01 28", .undefined, "group 7 /5 memory"),
    Vector("0f 01 f0", I(.lmsw, 3, os: 2, src: r(0, 2)), "lmsw ax"),
    Vector("0f 00 d8", I(.ltr, 3, os: 2, src: r(0, 2)), "ltr ax"),
    Vector("0f 00 10", I(.lldt, 3, os: 2, src: m(2), mem: mem(base: 0)), "lldt [rax]"),
    Vector("0f 00 c0", I(.sldt, 3, dst: r(0, 4)), "sldt eax"),
    Vector("0f 00 08", I(.str, 3, os: 2, dst: m(2), mem: mem(base: 0)), "str [rax]"),
    Vector("0f 00 28", I(.verw, 3, os: 2, src: m(2), mem: mem(base: 0)), "verw [rax]"),
    Vector("0f 02 c1", I(.lar, 3, dst: r(0, 4), src: r(1, 2)), "lar eax,cx"),
    Vector("48 0f 03 c1", I(.lsl, 4, os: 8, dst: r(0, 8), src: r(1, 2), rex: 0x48), "lsl rax,cx"),
    Vector("0f 20 d8", I(.movControl, 3, os: 8, dst: r(0, 8), src: Operand(.control, index: 3, size: 8)), "mov rax,cr3"),
    Vector("44 0f 20 c0", I(.movControl, 4, os: 8, dst: r(0, 8), src: Operand(.control, index: 8, size: 8), rex: 0x44),
           "mov rax,cr8"),
    Vector("0f 22 e0", I(.movControl, 3, os: 8, dst: Operand(.control, index: 4, size: 8), src: r(0, 8)), "mov cr4,rax"),
    Vector("0f 20 00", I(.movControl, 3, os: 8, dst: r(0, 8), src: Operand(.control, index: 0, size: 8)),
           "mov cr: mod ignored, no SIB"),
    Vector("0f 22 c8", .undefined, "mov cr1"),
    Vector("f0 0f 20 c0", .undefined, "lock mov cr (AMD CR8 alias): #UD"),
    Vector("0f 23 f8", I(.movDebug, 3, os: 8, dst: Operand(.debug, index: 7, size: 8), src: r(0, 8)), "mov dr7,rax"),
    Vector("44 0f 21 c0", .undefined, "mov dr8"),
    Vector("0f b2 00", I(.loadFarPointer, 3, dst: r(0, 4), src: m(6), src2: sreg(2), mem: mem(base: 0)), "lss eax,[rax]"),
    Vector("48 0f b5 00", I(.loadFarPointer, 4, os: 8, dst: r(0, 8), src: m(10), src2: sreg(5), mem: mem(base: 0), rex: 0x48),
           "lgs rax,[rax]"),
    Vector("0f b4 c0", .undefined, "lfs with a register"),
    Vector("0f c7 0f", I(.cmpxchgDouble, 3, os: 8, dst: m(8), mem: mem(base: 7)), "cmpxchg8b [rdi]"),
    Vector("f0 48 0f c7 0f", I(.cmpxchgDouble, 5, os: 16, dst: m(16), mem: mem(base: 7), rex: 0x48, lock: true),
           "lock cmpxchg16b [rdi]"),
    Vector("0f c7 c8", .undefined, "cmpxchg8b with a register"),
    Vector("0f c7 f0", I(.rdrand, 3, dst: r(0, 4)), "rdrand eax"),
    Vector("0f ae e8", I(.lfence, 3), "lfence"),
    Vector("0f ae f0", I(.mfence, 3), "mfence"),
    Vector("0f ae f8", I(.sfence, 3), "sfence"),
    Vector("0f ae 38", I(.clflush, 3, src: m(1), mem: mem(base: 0)), "clflush [rax]"),
    Vector("0f ae 07", I(.fxsave, 3, dst: m(0), mem: mem(base: 7)), "fxsave [rdi]"),
    Vector("48 0f ae 0f", I(.fxrstor, 4, os: 8, src: m(0), mem: mem(base: 7), rex: 0x48), "fxrstor64 [rdi]"),
    Vector("0f ae 14 24", I(.ldmxcsr, 4, src: m(4), mem: mem(seg: 2, base: 4)), "ldmxcsr [rsp]"),
    Vector("0f ae 1c 24", I(.stmxcsr, 4, dst: m(4), mem: mem(seg: 2, base: 4)), "stmxcsr [rsp]"),
    Vector("0f ae 20", .undefined, "xsave"),

    // x87: FOP (the opcode's low 3 bits and the ModRM) in immediate2; ST(i) operands.
    Vector("db e3", I(.fninit, 2, imm2: 0x3e3), "fninit"),
    Vector("9b db e3", I(.fwait, 1), "the fwait of finit decodes alone"),
    Vector("d9 7c 24 fe", I(.fnstcw, 4, os: 2, dst: m(2), mem: mem(seg: 2, base: 4, disp: -2), imm2: 0x17c), "fnstcw [rsp-2]"),
    Vector("d9 6c 24 fe", I(.fldcw, 4, os: 2, src: m(2), mem: mem(seg: 2, base: 4, disp: -2), imm2: 0x16c), "fldcw [rsp-2]"),
    Vector("dd 38", I(.fnstsw, 2, os: 2, dst: m(2), mem: mem(base: 0), imm2: 0x538), "fnstsw [rax]"),
    Vector("df e0", I(.fnstsw, 2, os: 2, dst: r(0, 2), imm2: 0x7e0), "fnstsw ax"),
    Vector("d9 c0", I(.fld, 2, src: st(0), imm2: 0x1c0), "fld st0"),
    Vector("d8 c1", I(.fadd, 2, dst: st(0), src: st(1), imm2: 0x0c1), "fadd st0,st1"),
    Vector("dc c1", I(.fadd, 2, dst: st(1), src: st(0), imm2: 0x4c1), "fadd st1,st0"),
    Vector("de e9", I(.fsubp, 2, dst: st(1), src: st(0), imm2: 0x6e9), "fsubp st1,st0 (DE E8+i)"),
    Vector("dc e9", I(.fsub, 2, dst: st(1), src: st(0), imm2: 0x4e9), "fsub st1,st0 (DC E8+i)"),
    Vector("dc e1", I(.fsubr, 2, dst: st(1), src: st(0), imm2: 0x4e1), "fsubr st1,st0 (DC E0+i)"),
    Vector("db e2", I(.fnclex, 2, imm2: 0x3e2), "fnclex"),
    Vector("d9 e8", I(.fld1, 2, imm2: 0x1e8), "fld1"),
    Vector("d9 fe", I(.fsin, 2, imm2: 0x1fe), "fsin"),
    Vector("de d9", I(.fcompp, 2, imm2: 0x6d9), "fcompp"),
    Vector("de d8", .undefined, "DE D8 is not FCOMPP"),
    Vector("da e9", I(.fucompp, 2, imm2: 0x2e9), "fucompp"),
    Vector("d9 05 10 00 00 00", I(.fld, 6, src: m(4), mem: mem(base: rip, disp: 16), imm2: 0x105), "fld dword [rip+16]"),
    Vector("dd 1c 24", I(.fstp, 3, dst: m(8), mem: mem(seg: 2, base: 4), imm2: 0x51c), "fstp qword [rsp]"),
    Vector("db 2e", I(.fld, 2, src: m(10), mem: mem(base: 6), imm2: 0x32e), "fld tword [rsi]"),
    Vector("df 2e", I(.fild, 2, src: m(8), mem: mem(base: 6), imm2: 0x72e), "fild qword [rsi]"),
    Vector("de 06", I(.fiadd, 2, os: 2, src: m(2), mem: mem(base: 6), imm2: 0x606), "fiadd word [rsi]"),
    Vector("df 3f", I(.fistp, 2, dst: m(8), mem: mem(base: 7), imm2: 0x73f), "fistp qword [rdi]"),
    Vector("df 37", I(.fbstp, 2, dst: m(10), mem: mem(base: 7), imm2: 0x737), "fbstp [rdi]"),
    Vector("d9 37", I(.fnstenv, 2, dst: m(28), mem: mem(base: 7), imm2: 0x137), "fnstenv [rdi]"),
    Vector("66 d9 37", I(.fnstenv, 3, os: 2, dst: m(14), mem: mem(base: 7), imm2: 0x137), "fnstenv with a 16-bit operand size"),
    Vector("dd 37", I(.fnsave, 2, dst: m(108), mem: mem(base: 7), imm2: 0x537), "fnsave [rdi]"),
    Vector("db 0f", I(.fisttp, 2, dst: m(4), mem: mem(base: 7), imm2: 0x30f), "fisttp dword [rdi]"),
    Vector("f2 0f 7c c1", I(.haddps, 4, os: 16, dst: x(0), src: x(1)), "haddps"),
    Vector("f2 0f f0 06", I(.movUnaligned128, 4, os: 16, dst: x(0), src: m(16), mem: mem(base: 6)), "lddqu"),
    Vector("f2 0f f0 c1", .undefined, "lddqu with a register"),
    Vector("f2 0f 12 c1", I(.movddup, 4, os: 8, dst: x(0), src: x(1, 8)), "movddup"),
    Vector("da c9", I(.fcmovcc, 2, cond: 4, dst: st(0), src: st(1), imm2: 0x2c9), "fcmove st0,st1"),
    Vector("db d9", I(.fcmovcc, 2, cond: 0xb, dst: st(0), src: st(1), imm2: 0x3d9), "fcmovnu st0,st1"),
    Vector("df f1", I(.fcomip, 2, dst: st(0), src: st(1), imm2: 0x7f1), "fcomip st0,st1"),
    Vector("df c1", I(.ffreep, 2, dst: st(1), imm2: 0x7c1), "ffreep st1"),
    Vector("d9 c9", I(.fxch, 2, dst: st(1), imm2: 0x1c9), "fxch st1"),

    // MMX.
    Vector("0f 6f c1", I(.movdq, 3, os: 8, dst: mm(0), src: mm(1)), "movq mm0,mm1"),
    Vector("41 0f fc c1", I(.paddb, 4, os: 8, dst: mm(0), src: mm(1), rex: 0x41), "paddb mm0,mm1 (REX.B ignored)"),
    Vector("0f 60 06", I(.punpcklbw, 3, os: 8, dst: mm(0), src: m(4), mem: mem(base: 6)), "punpcklbw mm0,[rsi] (m32)"),
    Vector("0f 71 d1 03", I(.psrlw, 4, os: 8, dst: mm(1), src: imm(1), imm: 3), "psrlw mm1,3"),
    Vector("0f 71 11 03", .undefined, "group 12 with memory"),
    Vector("0f 77", I(.emms, 2), "emms"),
    Vector("0f d7 c1", I(.pmovmskb, 3, dst: r(0, 4), src: mm(1)), "pmovmskb eax,mm1"),
    Vector("0f d7 01", .undefined, "pmovmskb with memory"),
    Vector("48 0f 7e c8", I(.movdq, 4, os: 8, dst: r(0, 8), src: mm(1, 8), rex: 0x48), "movq rax,mm1"),

    // SSE subset.
    Vector("66 0f ef c0", I(.pxor, 4, os: 16, dst: x(0), src: x(0)), "pxor xmm0,xmm0"),
    Vector("0f 57 c9", I(.pxor, 3, os: 16, dst: x(1), src: x(1)), "xorps"),
    Vector("66 0f 57 c9", I(.pxor, 4, os: 16, dst: x(1), src: x(1)), "xorpd"),
    Vector("0f 54 c1", I(.pand, 3, os: 16, dst: x(0), src: x(1)), "andps"),
    Vector("66 0f df c1", I(.pandn, 4, os: 16, dst: x(0), src: x(1)), "pandn"),
    Vector("66 0f eb c1", I(.por, 4, os: 16, dst: x(0), src: x(1)), "por"),
    Vector("f3 0f 6f 06", I(.movUnaligned128, 4, os: 16, dst: x(0), src: m(16), mem: mem(base: 6)), "movdqu xmm0,[rsi]"),
    Vector("66 0f 7f 07", I(.movAligned128, 4, os: 16, dst: m(16), src: x(0), mem: mem(base: 7)), "movdqa [rdi],xmm0"),
    Vector("0f 11 47 10", I(.movUnaligned128, 4, os: 16, dst: m(16), src: x(0), mem: mem(base: 7, disp: 16)), "movups [rdi+16]"),
    Vector("44 0f 28 c1", I(.movAligned128, 4, os: 16, dst: x(8), src: x(1), rex: 0x44), "movaps xmm8,xmm1"),
    Vector("66 48 0f 6e c0", I(.movdq, 5, os: 8, dst: x(0, 8), src: r(0, 8), rex: 0x48), "movq xmm0,rax"),
    Vector("66 0f 6e 07", I(.movdq, 4, dst: x(0, 4), src: m(4), mem: mem(base: 7)), "movd xmm0,[rdi]"),
    Vector("66 0f 7e c0", I(.movdq, 4, dst: r(0, 4), src: x(0, 4)), "movd eax,xmm0"),
    Vector("f3 0f 7e c1", I(.movdq, 4, os: 8, dst: x(0, 8), src: x(1, 8)), "movq xmm0,xmm1"),
    Vector("66 0f d6 07", I(.movdq, 4, os: 8, dst: m(8), src: x(0, 8), mem: mem(base: 7)), "movq [rdi],xmm0"),
    Vector("66 0f 70 c1 44", I(.pshufd, 5, os: 16, dst: x(0), src: x(1), src2: imm(1), imm: 0x44), "pshufd"),
    Vector("66 0f 6c c1", I(.punpcklqdq, 4, os: 16, dst: x(0), src: x(1)), "punpcklqdq"),
    Vector("66 f3 0f 6f c1", I(.movUnaligned128, 5, os: 16, dst: x(0), src: x(1)), "F3 beats 66 as mandatory prefix"),
    Vector("66 0f 10 4c 24 10", I(.movUnaligned128, 6, os: 16, dst: x(1), src: m(16), mem: mem(seg: 2, base: 4, disp: 16)),
           "movupd xmm1,[rsp+16]"),
    Vector("f3 0f 10 c1", I(.movss, 4, dst: x(0), src: x(1, 4)), "movss xmm0,xmm1"),
    Vector("f2 0f 10 07", I(.movsd, 4, os: 8, dst: x(0), src: m(8), mem: mem(base: 7)), "movsd xmm0,[rdi]"),
    Vector("f3 0f 11 07", I(.movss, 4, dst: m(4), src: x(0), mem: mem(base: 7)), "movss [rdi],xmm0"),
    Vector("0f 12 c1", I(.movhlps, 3, os: 16, dst: x(0), src: x(1)), "movhlps (0F 12 with a register)"),
    Vector("0f 12 07", I(.movlp, 3, os: 8, dst: x(0), src: m(8), mem: mem(base: 7)), "movlps (0F 12 with memory)"),
    Vector("66 0f 12 c1", .undefined, "movlpd needs memory"),
    Vector("0f 16 c1", I(.movlhps, 3, os: 16, dst: x(0), src: x(1)), "movlhps"),
    Vector("66 0f 17 07", I(.movhp, 4, os: 8, dst: m(8), src: x(0), mem: mem(base: 7)), "movhpd [rdi],xmm0"),
    Vector("0f 58 c1", I(.addps, 3, os: 16, dst: x(0), src: x(1)), "addps"),
    Vector("66 0f 58 c1", I(.addpd, 4, os: 16, dst: x(0), src: x(1)), "addpd"),
    Vector("f3 0f 58 c1", I(.addss, 4, dst: x(0), src: x(1, 4)), "addss"),
    Vector("f2 44 0f 59 06", I(.mulsd, 5, os: 8, dst: x(8), src: m(8), mem: mem(base: 6), rex: 0x44), "mulsd xmm8,[rsi]"),
    Vector("f2 48 0f 2a c1", I(.cvtsi2sd, 5, os: 8, dst: x(0), src: r(1, 8), rex: 0x48), "cvtsi2sd xmm0,rcx"),
    Vector("f3 0f 2d c1", I(.cvtss2si, 4, dst: r(0, 4), src: x(1, 4)), "cvtss2si eax,xmm1"),
    Vector("f2 48 0f 2c 06", I(.cvttsd2si, 5, os: 8, dst: r(0, 8), src: m(8), mem: mem(base: 6), rex: 0x48), "cvttsd2si rax,[rsi]"),
    Vector("0f 2a c1", I(.cvtpi2ps, 3, os: 8, dst: x(0), src: mm(1)), "cvtpi2ps xmm0,mm1"),
    Vector("66 0f 2d c1", I(.cvtpd2pi, 4, os: 16, dst: mm(0), src: x(1)), "cvtpd2pi mm0,xmm1"),
    Vector("0f c2 c1 05", I(.cmpps, 4, os: 16, dst: x(0), src: x(1), src2: imm(1), imm: 5), "cmpnltps"),
    Vector("f2 0f c2 c1 01", I(.cmpsd, 5, os: 8, dst: x(0), src: x(1, 8), src2: imm(1), imm: 1), "cmpltsd"),
    Vector("66 0f 2f c1", I(.comisd, 4, os: 8, dst: x(0), src: x(1, 8)), "comisd"),
    Vector("0f 50 c1", I(.movmskps, 3, dst: r(0, 4), src: x(1)), "movmskps eax,xmm1"),
    Vector("66 0f c5 c1 07", I(.pextrw, 5, dst: r(0, 4), src: x(1), src2: imm(1), imm: 7), "pextrw eax,xmm1,7"),
    Vector("66 0f c4 06 02", I(.pinsrw, 5, os: 16, dst: x(0), src: m(2), src2: imm(1), mem: mem(base: 6), imm: 2), "pinsrw xmm0,[rsi],2"),
    Vector("66 0f 73 f9 04", I(.pslldq, 5, os: 16, dst: x(1), src: imm(1), imm: 4), "pslldq xmm1,4"),
    Vector("0f 73 f9 04", .undefined, "pslldq has no MMX form"),
    Vector("f3 0f d6 c1", I(.movdq, 4, os: 8, dst: x(0, 8), src: mm(1)), "movq2dq xmm0,mm1"),
    Vector("f2 0f d6 c1", I(.movdq, 4, os: 8, dst: mm(0), src: x(1, 8)), "movdq2q mm0,xmm1"),
    Vector("0f c3 07", I(.mov, 3, dst: m(4), src: r(0, 4), mem: mem(base: 7)), "movnti [rdi],eax"),
    Vector("0f c3 c0", .undefined, "movnti with a register"),
    Vector("66 0f e7 07", I(.movAligned128, 4, os: 16, dst: m(16), src: x(0), mem: mem(base: 7)), "movntdq"),
    Vector("66 0f f7 c1", I(.maskmov, 4, os: 16, dst: x(0), src: x(1)), "maskmovdqu"),
    Vector("f3 0f 5b c1", I(.cvttps2dq, 4, os: 16, dst: x(0), src: x(1)), "cvttps2dq"),
    Vector("f3 0f e6 c1", I(.cvtdq2pd, 4, os: 8, dst: x(0), src: x(1, 8)), "cvtdq2pd"),
    Vector("66 0f 38 00 c1", .undefined, "pshufb (0F 38 map)"),
    Vector("66 0f 3a 0f c1 08", .undefined, "palignr (0F 3A map)"),
    Vector("c5 f8 77", .undefined, "VEX vzeroupper"),
    Vector("c4 e2 79 00 c1", .undefined, "VEX3"),
    Vector("62 f1 7c 48 10 00", .undefined, "EVEX"),

    // Invalid in 64-bit mode.
    Vector("06", .undefined, "push es"),
    Vector("1f", .undefined, "pop ds"),
    Vector("60", .undefined, "pusha"),
    Vector("ce", .undefined, "into"),
    Vector("82 c0 01", .undefined, "82"),
    Vector("27", .undefined, "daa"),
    Vector("d4 0a", .undefined, "aam"),
    Vector("9a 00 00 00 00 08 00", .undefined, "callf ptr"),
    Vector("ea 00 00 00 00 08 00", .undefined, "jmpf ptr"),
]

let vectors32: [Vector] = [
    Vector("40", .bits32, I(.inc, 1, asz: 4, dst: r(0, 4)), "inc eax"),
    Vector("4f", .bits32, I(.dec, 1, asz: 4, dst: r(7, 4)), "dec edi"),
    Vector("66 48", .bits32, I(.dec, 2, os: 2, asz: 4, dst: r(0, 2)), "dec ax"),
    Vector("8b 05 00 10 00 00", .bits32, I(.mov, 6, asz: 4, dst: r(0, 4), src: m(4), mem: mem(disp: 0x1000)),
           "disp32 absolute, not RIP-relative"),
    Vector("ff 15 00 10 00 00", .bits32, I(.callIndirect, 6, asz: 4, src: m(4), mem: mem(disp: 0x1000)), "call [0x1000]"),
    Vector("e8 00 01 00 00", .bits32, I(.callRelative, 5, asz: 4, imm: 0x100), "call rel32"),
    Vector("66 e8 00 01", .bits32, I(.callRelative, 4, os: 2, asz: 4, imm: 0x100), "call rel16"),
    Vector("50", .bits32, I(.push, 1, asz: 4, src: r(0, 4)), "push eax"),
    Vector("06", .bits32, I(.push, 1, asz: 4, src: sreg(0, 2)), "push es"),
    Vector("1f", .bits32, I(.pop, 1, asz: 4, dst: sreg(3, 2)), "pop ds"),
    Vector("60", .bits32, I(.pusha, 1, asz: 4), "pushad"),
    Vector("61", .bits32, I(.popa, 1, asz: 4), "popad"),
    Vector("ce", .bits32, I(.into, 1, asz: 4), "into"),
    Vector("82 c0 01", .bits32, I(.add, 3, os: 1, asz: 4, dst: r(0, 1), src: imm(1), imm: 1), "82 alias"),
    Vector("63 c1", .bits32, I(.arpl, 2, os: 2, asz: 4, dst: r(1, 2), src: r(0, 2)), "arpl cx,ax"),
    Vector("c5 06", .bits32, I(.loadFarPointer, 2, asz: 4, dst: r(0, 4), src: m(6), src2: sreg(3), mem: mem(base: 6)),
           "lds eax,[esi]"),
    Vector("c4 1e", .bits32, I(.loadFarPointer, 2, asz: 4, dst: r(3, 4), src: m(6), src2: sreg(0), mem: mem(base: 6)),
           "les ebx,[esi]"),
    Vector("c5 c0", .bits32, .undefined, "VEX (mod=11), not LDS"),
    Vector("ea 00 10 00 00 08 00", .bits32, I(.jmpFar, 7, asz: 4, imm: 0x1000, imm2: 8), "jmp 8:0x1000"),
    Vector("66 9a 00 10 08 00", .bits32, I(.callFar, 6, os: 2, asz: 4, imm: 0x1000, imm2: 8), "call 8:0x1000 (o16)"),
    Vector("0f 20 c0", .bits32, I(.movControl, 3, asz: 4, dst: r(0, 4), src: Operand(.control, index: 0, size: 4)),
           "mov eax,cr0"),
    Vector("0f 01 15 00 20 00 00", .bits32, I(.lgdt, 7, asz: 4, src: m(6), mem: mem(disp: 0x2000)), "lgdt [0x2000]"),
    Vector("0f 01 f8", .bits32, .undefined, "swapgs outside 64-bit mode"),
    Vector("40 01 c0", .bits32, I(.inc, 1, asz: 4, dst: r(0, 4)), "40 is INC, not REX"),
    Vector("36 8b 00", .bits32, I(.mov, 3, asz: 4, dst: r(0, 4), src: m(4), mem: mem(seg: 2, base: 0), seg: 2), "ss: override"),
    Vector("3e 8b 45 00", .bits32, I(.mov, 4, asz: 4, dst: r(0, 4), src: m(4), mem: mem(seg: 3, base: 5), seg: 3),
           "ds: override of the SS default"),
    Vector("8b 45 08", .bits32, I(.mov, 3, asz: 4, dst: r(0, 4), src: m(4), mem: mem(seg: 2, base: 5, disp: 8)), "[ebp+8]"),
    Vector("67 8b 07", .bits32, I(.mov, 3, asz: 2, dst: r(0, 4), src: m(4), mem: mem(base: 3)), "16-bit addressing [bx]"),
    Vector("f3 a5", .bits32, I(.movs, 2, asz: 4, rep: .repeatWhileEqual), "rep movsd"),
    Vector("26 a4", .bits32, I(.movs, 2, os: 1, asz: 4, mem: mem(seg: 0), seg: 0), "movsb es:"),
    Vector("0f c7 0f", .bits32, I(.cmpxchgDouble, 3, os: 8, asz: 4, dst: m(8), mem: mem(base: 7)), "cmpxchg8b"),
    Vector("6a 80", .bits32, I(.push, 2, asz: 4, src: imm(4), imm: 0xffff_ffff_ffff_ff80), "push -128"),
    Vector("e3 fe", .bits32, I(.jumpIfCXZero, 2, asz: 4, imm: minus1 - 1), "jecxz"),
    Vector("0f 05", .bits32, I(.syscall, 2, asz: 4), "syscall decodes (the interpreter checks)"),
    Vector("d6", .bits32, .undefined, "salc"),
    Vector("62 00", .bits32, .undefined, "bound (no Operation)"),
    Vector("37", .bits32, .undefined, "aaa"),
]

let vectors16: [Vector] = [
    Vector("8b 00", .bits16, I(.mov, 2, os: 2, asz: 2, dst: r(0, 2), src: m(2), mem: mem(base: 3, index: 6)), "mov ax,[bx+si]"),
    Vector("8b 46 fe", .bits16, I(.mov, 3, os: 2, asz: 2, dst: r(0, 2), src: m(2), mem: mem(seg: 2, base: 5, disp: -2)),
           "mov ax,[bp-2]"),
    Vector("8b 03", .bits16, I(.mov, 2, os: 2, asz: 2, dst: r(0, 2), src: m(2), mem: mem(seg: 2, base: 5, index: 7)),
           "mov ax,[bp+di]"),
    Vector("8b 06 00 7c", .bits16, I(.mov, 4, os: 2, asz: 2, dst: r(0, 2), src: m(2), mem: mem(disp: 0x7c00)), "mov ax,[0x7c00]"),
    Vector("8b 87 34 12", .bits16, I(.mov, 4, os: 2, asz: 2, dst: r(0, 2), src: m(2), mem: mem(base: 3, disp: 0x1234)),
           "mov ax,[bx+0x1234]"),
    Vector("8b 84 00 80", .bits16, I(.mov, 4, os: 2, asz: 2, dst: r(0, 2), src: m(2), mem: mem(base: 6, disp: -0x8000)),
           "disp16 sign-extended"),
    Vector("66 8b 00", .bits16, I(.mov, 3, asz: 2, dst: r(0, 4), src: m(4), mem: mem(base: 3, index: 6)), "o32 in 16-bit code"),
    Vector("67 8b 04 24", .bits16, I(.mov, 4, os: 2, asz: 4, dst: r(0, 2), src: m(2), mem: mem(seg: 2, base: 4)),
           "a32: [esp]"),
    Vector("3e 8b 46 00", .bits16, I(.mov, 4, os: 2, asz: 2, dst: r(0, 2), src: m(2), mem: mem(seg: 3, base: 5), seg: 3),
           "ds:[bp+0]"),
    Vector("26 8a 05", .bits16, I(.mov, 3, os: 1, asz: 2, dst: r(0, 1), src: m(1), mem: mem(seg: 0, base: 7), seg: 0),
           "mov al,es:[di]"),
    Vector("e8 00 01", .bits16, I(.callRelative, 3, os: 2, asz: 2, imm: 0x100), "call rel16"),
    Vector("eb fe", .bits16, I(.jmpRelative, 2, os: 2, asz: 2, imm: minus1 - 1), "jmp $"),
    Vector("0f 84 fc ff", .bits16, I(.jcc, 4, os: 2, asz: 2, cond: 4, imm: minus1 - 3), "je rel16"),
    Vector("ea 00 7c 00 00", .bits16, I(.jmpFar, 5, os: 2, asz: 2, imm: 0x7c00, imm2: 0), "jmp 0:0x7c00"),
    Vector("66 ea 00 00 10 00 08 00", .bits16, I(.jmpFar, 8, asz: 2, imm: 0x10_0000, imm2: 8), "jmp dword 8:0x100000"),
    Vector("cd 10", .bits16, I(.int, 2, os: 2, asz: 2, src: imm(1), imm: 0x10), "int 0x10"),
    Vector("b4 0e", .bits16, I(.mov, 2, os: 1, asz: 2, dst: hb(0), src: imm(1), imm: 0x0e), "mov ah,0x0e"),
    Vector("b8 34 12", .bits16, I(.mov, 3, os: 2, asz: 2, dst: r(0, 2), src: imm(2), imm: 0x1234), "mov ax,imm16"),
    Vector("66 b8 78 56 34 12", .bits16, I(.mov, 6, asz: 2, dst: r(0, 4), src: imm(4), imm: 0x1234_5678), "mov eax,imm32"),
    Vector("8e d0", .bits16, I(.movSegment, 2, os: 2, asz: 2, dst: sreg(2), src: r(0, 2)), "mov ss,ax"),
    Vector("0f 01 16 00 10", .bits16, I(.lgdt, 5, os: 2, asz: 2, src: m(6), mem: mem(disp: 0x1000)), "lgdt [0x1000]"),
    Vector("0f 22 c0", .bits16, I(.movControl, 3, asz: 2, dst: Operand(.control, index: 0, size: 4), src: r(0, 4)),
           "mov cr0,eax"),
    Vector("f3 ab", .bits16, I(.stos, 2, os: 2, asz: 2, mem: mem(seg: 0), rep: .repeatWhileEqual), "rep stosw"),
    Vector("ff 2f", .bits16, I(.jmpFar, 2, os: 2, asz: 2, src: m(4), mem: mem(base: 3)), "jmp far [bx] (m16:16)"),
    Vector("ff 56 02", .bits16, I(.callIndirect, 3, os: 2, asz: 2, src: m(2), mem: mem(seg: 2, base: 5, disp: 2)),
           "call [bp+2]"),
    Vector("6a fe", .bits16, I(.push, 2, os: 2, asz: 2, src: imm(2), imm: minus1 - 1), "push -2"),
    Vector("c2 04 00", .bits16, I(.ret, 3, os: 2, asz: 2, src: imm(2), imm: 4), "ret 4"),
    Vector("e2 fe", .bits16, I(.loop, 2, os: 2, asz: 2, imm: minus1 - 1), "loop (cx)"),
    Vector("cf", .bits16, I(.iret, 1, os: 2, asz: 2), "iret"),
    Vector("d7", .bits16, I(.xlat, 1, os: 1, asz: 2, dst: r(0, 1), mem: mem(base: 3)), "xlat"),
    Vector("c4 c0", .bits16, .undefined, "les with a register"),
    Vector("0f 20 c0", .bits16, I(.movControl, 3, asz: 2, dst: r(0, 4), src: Operand(.control, index: 0, size: 4)),
           "mov eax,cr0"),
]

@Suite("Decoder vectors")
struct DecoderVectorTests {
    @Test(arguments: vectors64 + vectors32 + vectors16)
    func vector(_ v: Vector) {
        let got = Decoder.decode(hexBytes(v.bytes), mode: v.mode)
        #expect(got == v.expected, "\(v.testDescription)")
    }

    @Test func tablesHaveEveryRow() {
        #expect(OpcodeTables.oneByte.count == 256)
        #expect(OpcodeTables.twoByte.count == 256)
        // Every ID has its table, with exactly the rows the flattening expects (a missing or
        // short table would silently decode as #UD).
        #expect(OpcodeTables.groupRows.count == GroupID.allCases.count * 16)
        for id in GroupID.allCases {
            let g = OpcodeTables.groups[id]
            #expect(g?.memory.count == 8 && g?.register.count == 8, "group \(id)")
        }
        #expect(OpcodeTables.rmRows.count == RMTableID.allCases.count * 8)
        for id in RMTableID.allCases { #expect(OpcodeTables.rmTables[id]?.count == 8, "rm table \(id)") }
        #expect(OpcodeTables.modSplitRows.count == ModSplitID.allCases.count * 2)
        for id in ModSplitID.allCases { #expect(OpcodeTables.modSplits[id]?.count == 2, "mod split \(id)") }
        #expect(OpcodeTables.prefixedRows.count == 256 * 4)
        for (opcode, rows) in OpcodeTables.prefixed { #expect(rows.count == 4, "0F \(opcode) prefixed rows") }
        // Every .prefixed row of the 0F map has its table.
        for (opcode, row) in OpcodeTables.twoByte.enumerated() where row.kind == .prefixed {
            #expect(Int(row.aux) == opcode && OpcodeTables.prefixed[row.aux] != nil, "0F \(opcode)")
        }
    }

    @Test func everyConditionCode() {
        for cc: UInt8 in 0..<16 {
            #expect(Decoder.decode([0x70 | cc, 0x10], mode: .bits64) == I(.jcc, 2, os: 8, cond: cc, imm: 0x10))
            #expect(Decoder.decode([0x0f, 0x80 | cc, 0, 1, 0, 0], mode: .bits64)
                        == I(.jcc, 6, os: 8, cond: cc, imm: 0x100))
            #expect(Decoder.decode([0x0f, 0x90 | cc, 0xc1], mode: .bits64) == I(.setcc, 3, os: 1, cond: cc, dst: r(1, 1)))
            #expect(Decoder.decode([0x48, 0x0f, 0x40 | cc, 0xc1], mode: .bits64)
                        == I(.cmovcc, 4, os: 8, cond: cc, dst: r(0, 8), src: r(1, 8), rex: 0x48))
        }
    }

    @Test func groupOneAndTwoRows() {
        let group1: [Operation] = [.add, .or, .adc, .sbb, .and, .sub, .xor, .cmp]
        let group2: [Operation] = [.rol, .ror, .rcl, .rcr, .shl, .shr, .shl, .sar]
        for reg: UInt8 in 0..<8 {
            let modrm = 0xc0 | reg << 3 | 1  // r/m = rCX
            #expect(Decoder.decode([0x83, modrm, 0xfe], mode: .bits64)
                        == I(group1[Int(reg)], 3, dst: r(1, 4), src: imm(4), imm: 0xffff_ffff_ffff_fffe))
            #expect(Decoder.decode([0x80, modrm, 0xfe], mode: .bits64)
                        == I(group1[Int(reg)], 3, os: 1, dst: r(1, 1), src: imm(1), imm: 0xfe))
            #expect(Decoder.decode([0xd3, modrm], mode: .bits64) == I(group2[Int(reg)], 2, dst: r(1, 4), src: cl))
            #expect(Decoder.decode([0xd1, modrm], mode: .bits64)
                        == I(group2[Int(reg)], 2, dst: r(1, 4), src: imm(1), imm: 1))
        }
    }

    @Test func highByteRegistersOnlyWithoutREX() {
        for reg: UInt8 in 0..<8 {
            let plain = Decoder.decode([0x88, 0xc0 | reg << 3], mode: .bits64)  // mov al, reg8
            let withREX = Decoder.decode([0x40, 0x88, 0xc0 | reg << 3], mode: .bits64)
            let expectedPlain = reg >= 4 ? hb(reg - 4) : r(reg, 1)
            #expect(plain == I(.mov, 2, os: 1, dst: r(0, 1), src: expectedPlain))
            #expect(withREX == I(.mov, 3, os: 1, dst: r(0, 1), src: r(reg, 1), rex: 0x40))
        }
    }

    @Test func lengthLimits() {
        #expect(Decoder.decode([0x48], mode: .bits64) == .truncated)
        #expect(Decoder.decode([], mode: .bits64) == .truncated)
        #expect(Decoder.decode([0x0f], mode: .bits64) == .truncated)
        #expect(Decoder.decode([0xe8, 0, 0], mode: .bits64) == .truncated)
        #expect(Decoder.decode([0x8b, 0x44], mode: .bits64) == .truncated)  // missing SIB
        #expect(Decoder.decode([0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7], mode: .bits64) == .truncated)
        // 14 prefixes + NOP = 15 bytes: fine. 15 prefixes + NOP: too long.
        let fourteen = [UInt8](repeating: 0x66, count: 14) + [0x90]
        #expect(Decoder.decode(fourteen, mode: .bits64) == I(.nop, 15, os: 2))
        #expect(Decoder.decode([UInt8](repeating: 0x66, count: 15) + [0x90], mode: .bits64) == .tooLong)
        #expect(Decoder.decode([UInt8](repeating: 0x2e, count: 20), mode: .bits32) == .tooLong)
        // 12 prefixes + a 4-byte instruction is 16 bytes.
        let sixteen = [UInt8](repeating: 0x66, count: 11) + [0x48, 0x8b, 0x44, 0x24, 0x08]
        #expect(Decoder.decode(sixteen, mode: .bits64) == .tooLong)
        // Bytes past the first 15 are never looked at.
        #expect(Decoder.decode([0x90] + [UInt8](repeating: 0xff, count: 40), mode: .bits64) == I(.nop, 1))
        // With fewer than 15 bytes given, a too-long instruction first reports truncation.
        #expect(Decoder.decode([UInt8](repeating: 0x66, count: 14), mode: .bits64) == .truncated)
    }
}
