// The `bt` engine: binary translation. Guest code runs as host code the translator made from
// it (`BlockTranslator`), with what it does not cover run by the `interp` engine's software
// CPU, which also supplies everything around the instructions: exits, interrupts, the MMU,
// CPUID and the MSRs. So the same guests, devices and scheduler run on it unchanged.

import VisorCore
import VisorX86
import VisorX86Decode

/// The binary-translation engine.
public struct BTEngine: Engine {
    public var name: String { "bt" }
    let cacheBytes: Int

    /// An engine whose vCPUs each have a code cache of `cacheBytes`.
    public init(cacheBytes: Int = BTExecutor.defaultCacheBytes) { self.cacheBytes = cacheBytes }

    public func makeMachine(memory: GuestMemory, options: MachineOptions) throws -> any VirtualMachine {
        let bytes = cacheBytes
        _ = try BTExecutor(cacheBytes: 4096)  // fail here, with the reason, if the host refuses executable memory
        let makeExecutor: @Sendable () -> any X86BlockExecutor = {
            // Checked above that a cache can be made; a later refusal leaves the vCPU to the
            // interpreter alone.
            if let executor = try? BTExecutor(cacheBytes: bytes) { return executor }
            return InterpreterOnly()
        }
        let decode: X86DecodeFunction = { VisorX86Decode.Decoder.decode($0, mode: $1) }
        return InterpVirtualMachine(memory: memory, options: options, decode: decode, makeExecutor: makeExecutor)
    }

    public func timeStampCounterFrequency() -> Double { InterpEngine.timeStampCounterHz }
}

/// An executor with nothing translated: every instruction goes to the interpreter.
final class InterpreterOnly: X86BlockExecutor {
    func executeBlock(on machine: X86Machine) -> Int { 0 }
    func codeInvalidated(physicalPage: UInt64?) {}
    func codePageAdded(physicalPage: UInt64) {}
}
