// Fuzz target `hypercall`: the PV hypercall dispatcher (`PVState.dispatch`, internal to Visor,
// reached with `@testable import`) and what the runtime calls around it, driven by a script
// over small guest RAM the script writes at will.
//
// Input: one byte choosing the vCPU count (1-4) and whether a shared-info page is installed
// first, then operations until the input ends, each an opcode byte and its operands:
//   0-3  a hypercall: number (mostly Visor's six, sometimes any 8- or 64-bit value), calling
//        vCPU (sometimes one that does not exist), CPL (mostly 0), sub-command, 4 arguments
//   4    8 bytes written anywhere in RAM          5  32 bytes written anywhere in RAM
//   6    a write to the shared-info or hypercall-page MSR
//   7    console input arrives (1-32 bytes)       8  the domain clock moves on
//   9    the runtime's timer pass for a vCPU (fireTimers when due, updateTime when needed)
//   10   the runtime's entry checks for a vCPU (upcall vector, blocked, online changes)
// Arguments are drawn like a guest's: small numbers, addresses in RAM, at its end, in the
// 4 GiB hole, overflowing, times near now.
//
// Invariants, beyond "never traps": a call from CPL > 0 is -EPERM with no actions; an error is
// one of the ABI's errno values and comes with no actions; actions name existing vCPUs and
// never kick the caller.

import FuzzSupport
import VisorABI
import VisorCore
@testable import Visor

final class FuzzPVContext: PVContext {
    var now: UInt64 = 1_000_000
    var consoleBytes = 0
    func consoleWrite(_ bytes: [UInt8]) { consoleBytes &+= bytes.count }
}

let ramSize: UInt64 = 64 << 10
let scratch: UInt64 = 0x8000
let sharedInfoAddress: UInt64 = 0x1000
let errors: Set<Int32> = [PVError.permission, PVError.noEntry, PVError.again, PVError.fault, PVError.busy,
                          PVError.exists, PVError.invalid, PVError.noSpace, PVError.noSystem]
let numbers: [UInt32] = [Hypercall.setTimerOp, Hypercall.xenVersion, Hypercall.consoleIO, Hypercall.vcpuOp,
                         Hypercall.schedOp, Hypercall.eventChannelOp]

extension FuzzInput {
    /// A hypercall argument as a guest might pass it.
    mutating func argument(now: UInt64) -> UInt64 {
        switch byte() & 7 {
        case 0: return UInt64(byte())
        case 1: return UInt64(u16()) % ramSize
        case 2: return ramSize &- UInt64(byte() & 63)
        case 3: return u64()
        case 4: return scratch + UInt64(byte() & 63) * 4
        case 5: return 0xc000_0000 &+ UInt64(u32())
        case 6: return now &+ scaled()
        default: return UInt64(u32())
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHypercall(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let setup = input.byte()
    let vcpuCount = 1 + Int(setup & 3)
    guard let memory = try? GuestMemory(size: ramSize) else { fatalError("cannot allocate guest RAM") }
    let pv = PVState(memory: memory, vcpuCount: vcpuCount, tscFrequency: 1_000_000_000 + UInt64(setup >> 3) * 7_919)
    let context = FuzzPVContext()
    if setup & 4 == 0 {
        require(pv.writeMSR(PVDiscovery.sharedInfoMSR, value: sharedInfoAddress | 0xf3) == .accepted,
                "a valid shared-info page was refused")
    }

    while !input.isAtEnd {
        switch input.byte() % 11 {
        case 0, 1, 2, 3:
            let pick = input.byte()
            let number: UInt64 = pick < 0xc0 ? UInt64(numbers[Int(pick) % numbers.count])
                : pick < 0xf0 ? UInt64(input.byte()) : input.u64()
            let vcpu = Int(input.byte()) % (vcpuCount + 1)
            let privilege = input.byte()
            let cpl: UInt8 = privilege & 0xf == 0xf ? 1 + (privilege >> 4) % 3 : 0
            let commandByte = input.byte()
            // Sub-ops 0-11 most of the time, sched_op's shutdown_request (32) some, anything else rarely.
            let command: UInt64 = commandByte < 0xe0 ? UInt64(commandByte % 12)
                : commandByte < 0xf0 ? UInt64(SchedOp.shutdownRequest) : input.argument(now: context.now)
            let registers = HypercallRegisters(
                rax: number, rdi: command, rsi: input.argument(now: context.now), rdx: input.argument(now: context.now),
                r10: input.argument(now: context.now), r8: input.argument(now: context.now), cpl: cpl)
            let outcome = pv.dispatch(vcpu: vcpu, registers: registers, context: context)
            if cpl != 0 {
                require(outcome == HypercallOutcome(result: PVError.permission), "CPL \(cpl) call gave \(outcome)")
            }
            if outcome.result < 0 {
                require(errors.contains(outcome.result), "\(registers) gave undefined error \(outcome.result)")
                require(outcome.actions.isEmpty, "\(registers) failed with actions \(outcome.actions)")
            }
            for action in outcome.actions {
                switch action {
                case .kick(let v):
                    require((0..<vcpuCount).contains(v) && v != vcpu, "\(registers) from \(vcpu): \(action)")
                case .resumeVCPU(let v), .startVCPU(let v, _):
                    require((0..<vcpuCount).contains(v), "\(registers) from \(vcpu): \(action)")
                case .yield, .block, .shutdown, .stopVCPU:
                    break
                }
            }
        case 4:
            let address = UInt64(input.u16()) % ramSize
            try? memory.store(input.u64(), at: GuestPhysicalAddress(address))
        case 5:
            let address = UInt64(input.u16()) % ramSize
            try? memory.write(input.take(32), at: GuestPhysicalAddress(address))
        case 6:
            let msr = input.bool() ? PVDiscovery.sharedInfoMSR : PVDiscovery.hypercallPageMSR
            _ = pv.writeMSR(msr, value: input.argument(now: context.now) | UInt64(input.byte()))
            _ = pv.readMSR(msr)
        case 7:
            _ = pv.receiveConsoleInput(input.take(1 + Int(input.byte() & 31)))
        case 8:
            context.now &+= input.scaled()
        case 9:
            let vcpu = Int(input.byte()) % vcpuCount
            if let deadline = pv.nextTimerDeadline(vcpu: vcpu), deadline <= context.now {
                for woken in pv.fireTimers(vcpu: vcpu, now: context.now) {
                    require((0..<vcpuCount).contains(woken), "fireTimers woke vCPU \(woken)")
                }
            }
            if pv.timeUpdateNeeded(vcpu: vcpu, now: context.now) {
                pv.updateTime(vcpu: vcpu, tsc: input.u64(), now: context.now)
            }
        default:
            let vcpu = Int(input.byte()) % vcpuCount
            if pv.upcallVector(for: vcpu) != nil { pv.noteUpcallInjected(vcpu: vcpu) }
            _ = pv.isBlocked(vcpu: vcpu)
            if input.byte() & 7 == 0 { pv.setOnline(vcpu: vcpu, !pv.isOnline(vcpu: vcpu)) }
            // The host asks the guest to power off or reboot (visor shutdown / reboot).
            if input.byte() & 7 == 0, let woken = pv.requestShutdown(input.bool() ? .poweroff : .reboot) {
                for v in woken { require((0..<vcpuCount).contains(v), "a shutdown request woke vCPU \(v)") }
            }
        }
    }
    return 0
}
