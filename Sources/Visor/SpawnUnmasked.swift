// Starting a host program as a child: the one way Visor (the guest build), the benchmarks
// (`visor bench linux`'s boots, QEMU, the C reference) and the integration tests spawn one.
// Not Foundation's Process: it waits for its child through a CFRunLoop whose wake-up socket
// pair cannot be made in a network namespace with its loopback down, and then never returns
// (seen with `ip netns exec` in a fresh namespace).

import CVisorHost
import Foundation

/// Starts `path` with `arguments` through posix_spawn, with every signal unblocked and at its
/// default action: a child inherits the signal mask of the thread that spawns it, and threads
/// that run with signals blocked (test threads under Swift concurrency and dispatch; `visor
/// run`'s, which leave signals to one sigwait thread) would pass that on, so a daemon such as
/// the tmux server would never see SIGCHLD, and a signal sent to the child would stay pending.
/// `files` sets up the child's descriptors 0-2; every other descriptor is closed in the child,
/// so it holds no pipe another thread of this process opened meanwhile (a child holding the
/// write end of a pipe that a thread here reads to its end makes that thread wait as long as
/// the child lives). `environment` is added to this process's. Returns the child's pid.
package func spawnUnmasked(_ path: String, _ arguments: [String], environment: [String: String] = [:],
                           files: (inout posix_spawn_file_actions_t) -> Void) throws(POSIXError) -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    files(&actions)
    _ = cvisorhost_spawn_close_from(&actions, 3)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t(), all = sigset_t()
    sigemptyset(&none)
    sigfillset(&all)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    // SAFETY: strdup'd C strings, alive until the deferred frees after posix_spawn has copied
    // them into the child; each array ends with the nil that argv and envp need.
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for argument in argv { free(argument) } }
    let variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for variable in envp { free(variable) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
    guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
    return pid
}

/// A wait status as a shell shows it: the exit status, or 128 + the signal that ended it.
package func shellStatus(_ waitStatus: Int32) -> Int32 {
    waitStatus & 0x7f == 0 ? (waitStatus >> 8) & 0xff : 128 + (waitStatus & 0x7f)
}
