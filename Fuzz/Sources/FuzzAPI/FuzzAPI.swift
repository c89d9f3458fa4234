// Fuzz target `api`: what a client of `visor serve` controls, decoded and validated as the server
// does it (`APIRequest.parse`: the method and request target routed, query parameters read, the
// Content-Type chosen, JSON bodies and xl.cfg bodies parsed), with no server, socket or event
// loop: the server calls the same function on every request NIO's codec hands it.
//
// Input: a method byte (one of eight methods, or 7: a raw method of up to 15 bytes), a
// Content-Type byte (none, text/plain, application/json, with parameters, other cases, a
// foreign type, empty, or a raw one), a 2-byte little-endian request-target length (up to
// 4095) and that many bytes (as UTF-8, repaired, as NIO gives it), then the body.
// Invariants, beyond "never traps": a refusal is a 4xx with a bounded message, and a 405 names
// the methods allowed; a configuration that is accepted, listed as `visor list -l` shows it
// (`XLConfigObject`) and sent back as JSON, is accepted again as the same domain.

import Foundation
import FuzzSupport
import Visor
@testable import VisorAPI

private let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
private let contentTypes: [String?] = [nil, "text/plain", "application/json", "application/json; charset=utf-8",
                                       "Text/Plain ; charset=UTF-8", "application/x-www-form-urlencoded", ""]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAPI(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let methodByte = input.below(8)
    let method = methodByte < methods.count
        ? methods[methodByte] : String(decoding: input.take(input.below(16)), as: UTF8.self)
    let typeByte = input.below(8)
    let contentType = typeByte < contentTypes.count
        ? contentTypes[typeByte] : String(decoding: input.take(input.below(64)), as: UTF8.self)
    let uri = String(decoding: input.take(Int(input.u16() & 0xfff)), as: UTF8.self)
    let body = input.rest()

    switch APIRequest.parse(method: method, uri: uri, contentType: contentType, body: body) {
    case .failure(let refusal):
        require((400..<500).contains(refusal.status), "status \(refusal.status) for a refusal: \(refusal.message.prefix(200))")
        require(!refusal.message.isEmpty && refusal.message.utf8.count < 2048,
                "a \(refusal.message.utf8.count)-byte refusal: \(refusal.message.prefix(200))")
        require((refusal.status == 405) == !refusal.allow.isEmpty, "405 without Allow, or Allow without 405: \(refusal)")
    case .success(.createDomain(let spec, let warnings)):
        for warning in warnings { require(warning.utf8.count < 1024, "a \(warning.utf8.count)-byte warning") }
        let echoed = APIJSON.encode(XLConfigObject(spec))
        do {
            let (again, _) = try XLConfig.parse(json: echoed, path: spec.path)
            require(again == spec, "the listed configuration is another domain: \(spec) became \(again)")
        } catch {
            require(false, "the listed configuration is refused: \(error.description.prefix(300))")
        }
    case .success:
        break
    }
    return 0
}
