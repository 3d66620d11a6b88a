import Foundation
import Glibc
import InfraSightStorage
import InfraSightTestSupport
import Testing

/// The read-only guard against the engine itself: statements that disguise a call of a
/// denied function (every quoting style ClickHouse reads, comments, escapes, case,
/// aliases, lambdas, subqueries) are refused, and what is allowed runs. The oracle is the
/// engine: a secret file that `file()` would read, and ClickHouse's own `EXPLAIN AST`.
@Suite struct QueryGuardTests {
    /// A file only root reads, whose content must never come back from a guarded query.
    static let secret: (path: String, text: String) = {
        let dir = try! makeTempDir(prefix: "guard-secret")
        let text = "secret-\(UUID().uuidString)"
        let path = "\(dir)/secret.txt"
        try! text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        return (path, text)
    }()

    /// The guard's answer: the output, or the error text.
    static func ask(_ sql: String) -> Result<String, StorageError> {
        do {
            let query = try ReadOnlyQuery(sql, format: "TSV")
            return .success(String(decoding: try StorageTests.embedded.readOnlyQuery(query), as: UTF8.self))
        } catch {
            return .failure(error)
        }
    }

    static let denied = ["file", "url", "executable", "s3", "remote", "input", "filesystem", "python", "mysql", "fileCluster"]

    /// The arguments a denied function is called with: the secret for `file`, else a
    /// closed port, so that nothing here waits if a call ever ran.
    static func arguments(_ name: String) -> String {
        name.lowercased() == "file" ? "'\(secret.path)'" : "'http://127.0.0.1:1/', 'TSV', 'a String'"
    }

    @Test func everyQuotingStyleOfADeniedCallIsRefusedByTheEnginesOwnParse() throws {
        let s = Self.secret.path
        let corpus = [
            // Unicode quotes: ClickHouse reads “...” as a quoted identifier (the finding).
            "SELECT “file”('\(s)')",
            "SELECT * FROM “file”('\(s)', 'LineAsString')",
            "SELECT “FILE”('\(s)')",
            "SELECT \"file\"('\(s)')",
            "SELECT `file`('\(s)')",
            "SELECT FiLe('\(s)')",
            "SELECT file/* a /* nested */ comment */('\(s)')",
            "SELECT file -- a line comment\n('\(s)')",
            "SELECT file\u{2002}('\(s)')",
            "SELECT $tag$text$tag$, file('\(s)')",
            "SELECT 'it''s', file('\(s)')",
            "SELECT file('\(s)') AS “x”",
            "WITH file('\(s)') AS x SELECT x",
            "WITH “file”('\(s)') AS x SELECT length(x)",
            "SELECT (SELECT file('\(s)'))",
            "SELECT arrayMap(x -> file(x), ['\(s)'])",
            "WITH x -> “file”(x) AS f SELECT f('\(s)')",
            "SELECT * FROM view(SELECT “file”('\(s)'))",
            "SELECT 1 WHERE file('\(s)') != ''",
            "SELECT * FROM (SELECT 1 AS a) WHERE a IN (SELECT length(file('\(s)')))",
            "EXPLAIN SYNTAX SELECT “file”('\(s)')",
            "SELECT * FROM “url”('http://127.0.0.1:1/', TSV, 'a String')",
            "SELECT * FROM “executable”('id', TSV, 'a String')",
            "SELECT * FROM “fuzzJSON”('{}')",
            "DESCRIBE TABLE “file”('\(s)', 'LineAsString')",
            // APPLY keeps the function's name out of the dump (a reviewer read files so).
            "SELECT * APPLY(file) FROM (SELECT '\(s)' AS p)",
            "SELECT * APPLY file FROM (SELECT '\(s)' AS p)",
            "SELECT * APPLY “file” FROM (SELECT '\(s)' AS p)",
            "SELECT COLUMNS('p') APPLY(`file`) FROM (SELECT '\(s)' AS p)",
            "SELECT * APPLY(x -> file(x)) FROM (SELECT '\(s)' AS p)",
            "SELECT * APPLY(lower) APPLY(“file”) FROM (SELECT '\(s)' AS p)",
            // Quadratic within one block, out of the time limit's reach.
            "SELECT editDistance(repeat('a', 65000), repeat('b', 65000))",
            "SELECT “levenshteinDistance”('a', 'b')",
        ]
        for sql in corpus {
            switch Self.ask(sql) {
            case .success(let output):
                Issue.record("ran: \(sql) → \(output.prefix(200))")
            case .failure(let error):
                #expect(error.description.hasPrefix("refused: "), "\(sql): \(error)")
                #expect(!error.description.contains(Self.secret.text), "\(sql): \(error)")
            }
        }
        // Named reasons.
        #expect(try #require(Self.ask("SELECT “file”('\(s)')").failure).description
            == "refused: file() reads or writes files on this host; queries here read only the stored tables")
        #expect(try #require(Self.ask("SELECT * FROM “fuzzJSON”('{}')").failure).description.hasPrefix("refused: table function fuzzJSON() reaches beyond the stored tables"))
        #expect(try #require(Self.ask("SELECT nosuchfunction(1)").failure).description == "refused: nosuchfunction() is not a function this ClickHouse knows")
        #expect(try #require(Self.ask("SELECT * APPLY “file” FROM (SELECT '\(s)' AS p)").failure).description
            == "refused: APPLY hides the function it calls from this check; write the call on each column instead")

        // What is allowed runs, however it is quoted.
        let allowed: [(String, String)] = [
            ("SELECT “plus”(1, 2)", "3\n"),
            ("SELECT * FROM “numbers”(3)", "0\n1\n2\n"),
            ("WITH x -> x + 1 AS f SELECT f(41)", "42\n"),
            ("SELECT sumIf(number, number > 1), countIfOrNull(number > 3) FROM numbers(5)", "9\t1\n"),
            ("SELECT quantileExact(0.5)(number) FROM numbers(5)", "2\n"),
            ("SELECT LENGTH('file(')", "5\n"),
            ("SELECT 'file(''/etc/shadow'')' -- file('x')\n", "file(\\'/etc/shadow\\')\n"),
            ("SELECT count() FROM system.one", "1\n"),
        ]
        for (sql, expected) in allowed {
            switch Self.ask(sql) {
            case .success(let output): #expect(output == expected, "\(sql)")
            case .failure(let error): Issue.record("refused: \(sql): \(error)")
            }
        }
    }

    @Test func aStatementsParametersAreItsOwnAndLeaveNothingBehind() throws {
        func ask(_ sql: String, _ parameters: [String: String]) -> Result<String, StorageError> {
            do throws(StorageError) {
                return .success(String(decoding: try StorageTests.embedded.readOnlyQuery(ReadOnlyQuery(sql, parameters: parameters)), as: UTF8.self))
            } catch {
                return .failure(error)
            }
        }
        let secret = "secret-\(UUID().uuidString)"
        #expect(try ask("SELECT {who:String}", ["who": secret]).get() == "\(secret)\n")
        // The next asker on that session does not read it.
        for _ in 0..<8 {
            if case .success(let output) = ask("SELECT {who:String}", [:]) { #expect(!output.contains(secret)) }
        }
        // A value with no placeholder is refused, before any session sees it.
        #expect(try #require(ask("SELECT 1", ["unused": "x"]).failure).description == "refused: parameter unused has no {unused:Type} placeholder in the statement")
        // Many names, many times: each session starts afresh past its bound, and answers.
        for round in 0..<3 {
            var names: [String: String] = [:]
            for i in 0..<60 { names["p\(round)_\(i)"] = String(repeating: "v", count: 1000) }
            let sql = "SELECT " + names.keys.sorted().map { "length({\($0):String})" }.joined(separator: " + ")
            for _ in 0..<6 { #expect(try ask(sql, names).get() == "60000\n") }
        }
    }

    /// Thousands of generated statements per run (seeded; the seed is in every failure):
    /// a denied call in code position, disguised, mixed with allowed calls, strings,
    /// comments and heredocs holding the same names as text. The test fails when the
    /// guard lets through a statement whose engine tree (`EXPLAIN AST`, read here on its
    /// own) calls a denied function, when the secret comes back, or when a statement with
    /// no denied call in code position is refused.
    @Test func generatedStatementsNeverRunADeniedFunction() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["GUARD_FUZZ_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        var random = SplitMix(seed: seed)
        let deniedKeys = Set(Self.denied.map { $0.lowercased() })
        var (ran, refused) = (0, 0)
        for i in 0..<3000 {
            let (sql, callsDenied) = Self.generate(&random)
            let context = "seed \(seed), statement \(i): \(sql)"
            switch Self.ask(sql) {
            case .success(let output):
                ran += 1
                #expect(!callsDenied, "ran a denied call: \(context)")
                #expect(!output.contains(Self.secret.text), "the secret came back: \(context)")
                // The engine's own tree, read here apart from the guard.
                let tree = EmbeddedStore.strings(try StorageTests.embedded.engine.executeReadOnly("EXPLAIN AST\n\(sql)\n"))
                    .compactMap(\.first).joined(separator: "\n")
                for line in tree.split(separator: "\n") {
                    let trimmed = line.drop { $0 == " " }
                    guard trimmed.hasPrefix("Function ") else { continue }
                    let name = trimmed.dropFirst("Function ".count).prefix { $0 != " " }.lowercased()
                    #expect(!deniedKeys.contains(name), "the engine's tree calls \(name): \(context)")
                }
                // And its analysed tree, another print of the same statement, in which
                // transformers like APPLY are already expanded into calls.
                let analysed = EmbeddedStore.strings(try StorageTests.embedded.engine.executeReadOnly("EXPLAIN QUERY TREE\n\(sql)\n"))
                    .compactMap(\.first).joined(separator: "\n")
                for match in analysed.split(separator: "\n") where match.contains("function_name: ") {
                    let name = match[match.range(of: "function_name: ")!.upperBound...].prefix { $0 != "," }.lowercased()
                    #expect(!deniedKeys.contains(name), "the analysed tree calls \(name): \(context)")
                }
            case .failure(let error):
                refused += 1
                #expect(!error.description.contains(Self.secret.text), "the secret is in the error: \(context)")
                if callsDenied {
                    // The guard's refusal, not an engine error after the guard let it pass.
                    #expect(error.description.hasPrefix("refused: "), "the guard passed a denied call: \(context): \(error)")
                } else {
                    Issue.record("a statement with no denied call failed: \(context): \(error)")
                }
            }
        }
        // Both kinds were generated, so the test exercised both sides of the guard.
        #expect(ran > 300 && refused > 300, "seed \(seed): ran \(ran), refused \(refused)")
    }

    /// One statement and whether it calls a denied function in code position.
    static func generate(_ random: inout SplitMix) -> (String, Bool) {
        func pick<T>(_ items: [T]) -> T { items[Int(random.next() % UInt64(items.count))] }
        func quoted(_ name: String) -> String {
            let n = random.next() % 4 == 0 ? name.uppercased() : name
            return pick([n, "`\(n)`", "\"\(n)\"", "“\(n)”", n])
        }
        func gap() -> String { pick(["", " ", "\t", "\n", "/* c */", "/* a /* b */ c */", " -- c\n", "\u{2002}", "\u{00A0}"]) }
        func decoy() -> String {
            // The denied names as text only.
            let name = pick(Self.denied)
            return pick(["'\(name)(x)'", "$t$\(name)('\(secret.path)')$t$", "'\\'\(name)('", "/* \(name)('x') */ 1", "'”\(name)“('", "1 -- \(name)('x')\n"])
        }
        let allowedCall = pick(["“plus”(1, 2)", "\"lower\"('A')", "`concat`('a', 'b')", "length('abc')", "LENGTH('x')", "toString(1)"])
        let deniedName = pick(Self.denied)
        let deniedCall = "\(quoted(deniedName))\(gap())(\(arguments(deniedName)))"
        let callsDenied = random.next() % 2 == 0
        let call = callsDenied ? deniedCall : allowedCall
        let shapes = [
            "SELECT \(call)",
            "SELECT \(decoy()), \(call)",
            "SELECT \(call) AS \(pick(["a", "“a”", "`file`", "\"url\""]))",
            "WITH \(call) AS a SELECT a",
            "SELECT (SELECT \(call))",
            "SELECT arrayMap(x -> \(call), [1])",
            "WITH x -> \(call) AS f SELECT f(1)",
            "SELECT 1 WHERE toString(\(call)) != ''",
            "SELECT \(call)\(gap())FROM system.one",
            "SELECT * FROM (SELECT \(call) AS v)",
        ]
        // APPLY hides what it calls: refused whatever it names, with or without parentheses
        // (the engine takes a bare name only without them).
        if random.next() % 12 == 0 {
            let bare = callsDenied ? deniedName : pick(["lower", "upper", "length"])
            let applied = callsDenied ? quoted(deniedName) : pick(["lower", "“upper”", "`length`", "x -> lower(x)"])
            return (pick(["SELECT * APPLY(\(applied)) FROM (SELECT '\(secret.path)' AS p)", "SELECT * APPLY \(bare) FROM (SELECT '\(secret.path)' AS p)"]), true)
        }
        return (pick(shapes), callsDenied)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}

/// A small seeded generator (SplitMix64), so a failing run can be replayed with its seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
