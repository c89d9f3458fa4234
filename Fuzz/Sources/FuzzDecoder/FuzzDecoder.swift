// Fuzz target `decoder`: the x86 decoder on any bytes in any code mode.
//
// Input: one byte choosing the mode (16, 32 or 64-bit), then the instruction bytes (the decoder
// looks at 15 at most). Invariants, beyond "never traps": an instruction's length is 1-15 and
// within the bytes given, its sizes are ones the interpreter handles, the same bytes cut to that
// length decode identically, `.truncated` only when fewer than 15 bytes were given, `.tooLong`
// only when at least 15 were.

import FuzzSupport
import VisorX86Decode

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecoder(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let modes: [CodeMode] = [.bits16, .bits32, .bits64]
    let mode = modes[input.below(3)]
    let code = input.take(20)
    let result = Decoder.decode(code, mode: mode)
    switch result {
    case .instruction(let insn):
        let length = Int(insn.length)
        require(length >= 1 && length <= 15 && length <= code.count, "length \(length) of \(code.count) bytes")
        require([1, 2, 4, 8, 16].contains(insn.operandSize), "operand size \(insn.operandSize)")
        require([2, 4, 8].contains(insn.addressSize), "address size \(insn.addressSize)")
        require(Decoder.decode(Array(code[0..<length]), mode: mode) == result, "not stable when cut to its length")
    case .truncated:
        require(code.count < 15, "truncated with \(code.count) bytes")
    case .tooLong:
        require(code.count >= 15, "too long with \(code.count) bytes")
    case .undefined:
        break
    }
    return 0
}
