// What a client controls, decoded and validated without the toolstack or any I/O: the method
// and request target become an `APIRoute`, and the route with its Content-Type and body an
// `APIRequest` (a configuration parsed, a JSON change checked) or an `APIRequestError` with its
// HTTP status. The server (APIServer) answers from these; the fuzz target `api` drives them.

import Foundation

/// One request the API understands, decoded from its method and path; or why not.
enum APIRoute: Equatable {
    case hostInfo
    case dmesg
    case listDomains
    /// `GET /domains?detail=true`: every domain's long listing (`visor list -l`).
    case listDomainDetails
    case createDomain(path: String?)
    case getDomain(String)
    /// `GET /domains/NAME?detail=true`.
    case getDomainDetail(String)
    case destroyDomain(String)
    case pause(String)
    case unpause(String)
    case shutdown(String)
    case reboot(String)
    /// `GET /domains/NAME/console?writer=true`: also as the console's one writer.
    case consoleStream(String, writer: Bool)
    case consoleInput(String)
    case getSched(String)
    case setSched(String)
    /// `GET /domains/NAME/sched/vcpus`: each vCPU's parameters (`visor sched-rtds -d NAME -v all`).
    case getVCPUSched(String)
    /// vCPU nil: every vCPU of the domain ("all").
    case setVCPUSched(String, vcpu: Int?)
    case listVCPUs(String?)
    /// vCPU nil: every vCPU of the domain ("all").
    case pin(String, vcpu: Int?)

    enum Problem: Error, Equatable {
        case noSuchEndpoint(String)
        case methodNotAllowed(allowed: [String])
        case badPath(String)
        case badQuery(String)
    }

    /// Decodes `method uri`. Path segments are percent-decoded; the query parameters are `path`
    /// on `POST /domains` (the config file's path, for messages and relative paths) and `detail`
    /// (true or false) on `GET /domains` and `GET /domains/NAME`, and `writer` (true or false) on
    /// `GET /domains/NAME/console`.
    static func decode(method: String, uri: String) -> Result<APIRoute, Problem> {
        guard uri.hasPrefix("/"), let components = URLComponents(string: uri) else {
            return .failure(.badPath("the request target '\(uri.prefix(80))' is not an absolute path"))
        }
        let rawPath = uri.prefix { $0 != "?" && $0 != "#" }
        var segments: [String] = []
        for raw in rawPath.split(separator: "/", omittingEmptySubsequences: true) {
            guard let segment = percentDecoded(raw), !segment.isEmpty else {
                return .failure(.badPath("the path segment '\(raw.prefix(80))' is not valid percent-encoded UTF-8"))
            }
            segments.append(segment)
        }
        func on(_ methods: [String: APIRoute]) -> Result<APIRoute, Problem> {
            if let route = methods[method] { return .success(route) }
            return .failure(.methodNotAllowed(allowed: methods.keys.sorted()))
        }
        /// A true-or-false query parameter (`detail`, `writer`): absent is false.
        func flag(_ name: String) -> Result<Bool, Problem> {
            guard let item = components.queryItems?.first(where: { $0.name == name }) else { return .success(false) }
            switch item.value ?? "" {
            case "true", "1", "": return .success(true)
            case "false", "0": return .success(false)
            default: return .failure(.badQuery("\(name) must be true or false, not '\((item.value ?? "").prefix(40))'"))
            }
        }
        func detail() -> Result<Bool, Problem> { flag("detail") }
        func vcpuNumber(_ segment: String) -> Result<Int?, Problem> {
            if segment == "all" { return .success(nil) }
            if segment.utf8.count <= 4, segment.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(segment) {
                return .success(n)
            }
            return .failure(.badPath("'\(segment.prefix(40))' is not a vCPU number or all"))
        }
        switch segments.count {
        case 1 where segments[0] == "host": return on(["GET": .hostInfo])
        case 1 where segments[0] == "dmesg": return on(["GET": .dmesg])
        case 1 where segments[0] == "vcpus": return on(["GET": .listVCPUs(nil)])
        case 1 where segments[0] == "domains":
            let path = components.queryItems?.first { $0.name == "path" }?.value
            let list: APIRoute
            switch method == "GET" ? detail() : .success(false) {
            case .success(let long): list = long ? .listDomainDetails : .listDomains
            case .failure(let problem): return .failure(problem)
            }
            return on(["GET": list, "POST": .createDomain(path: path)])
        case 2 where segments[0] == "domains":
            let get: APIRoute
            switch method == "GET" ? detail() : .success(false) {
            case .success(let long): get = long ? .getDomainDetail(segments[1]) : .getDomain(segments[1])
            case .failure(let problem): return .failure(problem)
            }
            return on(["GET": get, "DELETE": .destroyDomain(segments[1])])
        case 3 where segments[0] == "domains":
            let name = segments[1]
            switch segments[2] {
            case "pause": return on(["POST": .pause(name)])
            case "unpause": return on(["POST": .unpause(name)])
            case "shutdown": return on(["POST": .shutdown(name)])
            case "reboot": return on(["POST": .reboot(name)])
            case "console":
                switch method == "GET" ? flag("writer") : .success(false) {
                case .success(let writer): return on(["GET": .consoleStream(name, writer: writer), "POST": .consoleInput(name)])
                case .failure(let problem): return .failure(problem)
                }
            case "sched": return on(["GET": .getSched(name), "PUT": .setSched(name)])
            case "vcpus": return on(["GET": .listVCPUs(name)])
            default: break
            }
        case 4 where segments[0] == "domains" && segments[2] == "sched" && segments[3] == "vcpus":
            return on(["GET": .getVCPUSched(segments[1])])
        case 5 where segments[0] == "domains" && segments[2] == "vcpus" && segments[4] == "affinity":
            switch vcpuNumber(segments[3]) {
            case .success(let vcpu): return on(["PUT": .pin(segments[1], vcpu: vcpu)])
            case .failure(let problem): return .failure(problem)
            }
        case 5 where segments[0] == "domains" && segments[2] == "sched" && segments[3] == "vcpus":
            switch vcpuNumber(segments[4]) {
            case .success(let vcpu): return on(["PUT": .setVCPUSched(segments[1], vcpu: vcpu)])
            case .failure(let problem): return .failure(problem)
            }
        default: break
        }
        return .failure(.noSuchEndpoint("\(method) \(rawPath.prefix(120))"))
    }

    /// `text` with every `%XX` replaced by its byte, or nil when a `%` is not followed by two
    /// hex digits or the bytes are not UTF-8 (Foundation's decoder passes some of these through).
    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8.makeIterator()
        func hex(_ b: UInt8?) -> UInt8? {
            guard let b else { return nil }
            switch b {
            case 0x30...0x39: return b - 0x30
            case 0x41...0x46: return b - 0x41 + 10
            case 0x61...0x66: return b - 0x61 + 10
            default: return nil
            }
        }
        while let b = utf8.next() {
            guard b == UInt8(ascii: "%") else { bytes.append(b); continue }
            guard let high = hex(utf8.next()), let low = hex(utf8.next()) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}


/// A request ready for the toolstack: its route with the body decoded and validated.
enum APIRequest: Equatable {
    case hostInfo
    case dmesg
    case listDomains
    case listDomainDetails
    /// A configuration already parsed and validated (from xl.cfg text or its JSON form).
    case createDomain(DomainSpec, warnings: [String])
    case getDomain(String)
    case getDomainDetail(String)
    case destroyDomain(String)
    case pause(String)
    case unpause(String)
    /// `xl shutdown` (`.powerOff`) or `xl reboot` (`.reboot`).
    case requestShutdown(String, ShutdownRequest, ShutdownOptions)
    case consoleStream(String, writer: Bool)
    /// Input, with the writer's key when the sender attached as the writer.
    case consoleInput(String, [UInt8], writerKey: String?)
    case getSched(String)
    case setSched(String, SchedParameters)
    case getVCPUSched(String)
    case setVCPUSched(String, vcpu: Int?, SchedParameters)
    case listVCPUs(String?)
    case pin(String, vcpu: Int?, AffinityChange)

    /// The header a console writer's input carries its key in.
    static let consoleWriterHeader = "Visor-Console-Writer"

    /// Decodes and validates a whole request. `contentType` is the Content-Type header, if any;
    /// `writerKey` the `Visor-Console-Writer` header.
    static func parse(method: String, uri: String, contentType: String?, writerKey: String? = nil,
                      body: [UInt8]) -> Result<APIRequest, APIRequestError> {
        guard body.count <= APIRequest.maximumBodyBytes else {
            return .failure(APIRequestError(status: 413, "the request body is larger than \(APIRequest.maximumBodyBytes) bytes"))
        }
        let route: APIRoute
        switch APIRoute.decode(method: method, uri: uri) {
        case .success(let r): route = r
        case .failure(.noSuchEndpoint(let what)):
            return .failure(APIRequestError(status: 404, "no such endpoint: \(what) (see docs/api.yaml)"))
        case .failure(.methodNotAllowed(let allowed)):
            return .failure(APIRequestError(status: 405,
                                            "\(method.prefix(20)) is not allowed on \(uri.prefix(120)): use \(allowed.joined(separator: " or "))",
                                            allow: allowed))
        case .failure(.badPath(let message)), .failure(.badQuery(let message)):
            return .failure(APIRequestError(status: 400, message))
        }
        func decoded<T>(_ result: Result<T, BodyProblem>, _ make: (T) -> APIRequest) -> Result<APIRequest, APIRequestError> {
            switch result {
            case .success(let value): return .success(make(value))
            case .failure(let problem): return .failure(APIRequestError(status: 400, problem.message))
            }
        }
        switch route {
        case .hostInfo: return .success(.hostInfo)
        case .dmesg: return .success(.dmesg)
        case .listDomains: return .success(.listDomains)
        case .listDomainDetails: return .success(.listDomainDetails)
        case .createDomain(let path): return createDomain(path: path, contentType: contentType, body: body)
        case .getDomain(let name): return .success(.getDomain(name))
        case .getDomainDetail(let name): return .success(.getDomainDetail(name))
        case .destroyDomain(let name): return .success(.destroyDomain(name))
        case .pause(let name): return .success(.pause(name))
        case .unpause(let name): return .success(.unpause(name))
        case .shutdown(let name): return decoded(ShutdownOptions.decodeStrictly(body)) { .requestShutdown(name, .powerOff, $0) }
        case .reboot(let name): return decoded(ShutdownOptions.decodeStrictly(body)) { .requestShutdown(name, .reboot, $0) }
        case .consoleStream(let name, let writer): return .success(.consoleStream(name, writer: writer))
        case .consoleInput(let name):
            // A key is 32 hex digits; anything else cannot be one, and is not kept.
            if let writerKey, writerKey.utf8.count != 32 || !writerKey.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) {
                return .failure(APIRequestError(status: 400, "the \(consoleWriterHeader) header is not a writer key (32 lowercase hex digits)"))
            }
            return .success(.consoleInput(name, body, writerKey: writerKey))
        case .getSched(let name): return .success(.getSched(name))
        case .setSched(let name): return decoded(SchedParameters.decodeStrictly(body)) { .setSched(name, $0) }
        case .getVCPUSched(let name): return .success(.getVCPUSched(name))
        case .setVCPUSched(let name, let vcpu):
            return decoded(SchedParameters.decodeStrictly(body)) { .setVCPUSched(name, vcpu: vcpu, $0) }
        case .listVCPUs(let name): return .success(.listVCPUs(name))
        case .pin(let name, let vcpu): return decoded(AffinityChange.decodeStrictly(body)) { .pin(name, vcpu: vcpu, $0) }
        }
    }

    /// The largest request body taken (an xl.cfg file has at most this many bytes too).
    static let maximumBodyBytes = XLConfig.maximumFileBytes

    /// The media types `POST /domains` takes: a configuration's JSON form, or xl.cfg text (also
    /// when no Content-Type is given).
    static let jsonMediaType = "application/json"
    static let configurationMediaTypes: Set<String> = ["text/plain", "text/x-xl-cfg", ""]

    /// `POST /domains`: the configuration parsed and validated as `visor run` does it.
    private static func createDomain(path: String?, contentType: String?,
                                     body: [UInt8]) -> Result<APIRequest, APIRequestError> {
        // The media type without parameters (`text/plain; charset=utf-8`), compared without case.
        let mediaType = (contentType ?? "").prefix { $0 != ";" }.trimmingCharacters(in: .whitespaces).lowercased()
        let json = mediaType == jsonMediaType
        guard json || configurationMediaTypes.contains(mediaType) else {
            return .failure(APIRequestError(status: 415, "the Content-Type '\(mediaType.prefix(80))' is not one POST /domains takes: "
                                            + "send xl.cfg text as text/plain, or a JSON object of xl.cfg keys as application/json"))
        }
        let what = json ? "a JSON object of xl.cfg keys" : "the xl.cfg file's contents"
        guard let text = String(validating: body, as: UTF8.self) else {
            return .failure(APIRequestError(status: 400, "the body is not UTF-8 text: send \(what)"))
        }
        guard !text.allSatisfy(\.isWhitespace) else {
            return .failure(APIRequestError(status: 400, "the body is empty: send \(what)"))
        }
        // Absolute: relative paths in the configuration are taken from its directory, and a
        // relative one would leave them relative (to the daemon's working directory) in the
        // domain's configuration, which `list -l` shows and may be sent back.
        if let path, !path.hasPrefix("/") || path.utf8.count > 4096 || path.contains("\0") {
            return .failure(APIRequestError(status: 400, "the query parameter path must be an absolute file path of at most 4096 bytes"))
        }
        let source = path ?? "request"
        do {
            let (spec, warnings) = json ? try XLConfig.parse(json: body, path: source) : try XLConfig.parse(text, path: source)
            return .success(.createDomain(spec, warnings: warnings))
        } catch {
            return .failure(APIRequestError(status: 400, error.description))
        }
    }
}

/// Why a request was refused before it reached the toolstack: an HTTP status and the message.
struct APIRequestError: Error, Equatable {
    var status: Int
    var message: String
    /// For a 405: the methods the path takes (the Allow header).
    var allow: [String]

    init(status: Int, _ message: String, allow: [String] = []) {
        self.status = status; self.message = message; self.allow = allow
    }
}
