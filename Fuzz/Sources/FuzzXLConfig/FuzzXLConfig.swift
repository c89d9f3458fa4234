// Fuzz target `xlconfig`: the xl.cfg parser and validator (`XLConfig.parse`) on any text, as
// `visor run a.cfg` reads it (`XLConfig.load` refuses what is not UTF-8 before parsing; so
// does this target).
//
// Input: the file. Invariants, beyond "never traps": a refusal names the file, and its message
// is bounded (a hostile file cannot flood the terminal through an error).

import FuzzSupport
import Visor

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzXLConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let bytes = input.rest()
    guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
    do {
        let (spec, warnings) = try XLConfig.parse(text, path: "/fuzz/domain.cfg")
        _ = spec
        for warning in warnings { require(warning.utf8.count < 1024, "a \(warning.utf8.count)-byte warning") }
    } catch {
        let message = error.description
        require(message.contains("/fuzz/domain.cfg"), "the error does not name the file: \(message)")
        require(message.utf8.count < 1024, "a \(message.utf8.count)-byte error: \(message.prefix(200))")
    }
    return 0
}
