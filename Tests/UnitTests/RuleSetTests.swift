import InfraSightSchema
import InfraSightStorage
import Testing

@testable import InfraSightRules

/// How rules files are read, expanded and refused, without an engine: the type check is a
/// stand-in that answers UInt8 for any condition (the engine's own check is exercised by
/// `infrasight rules check` in the integration tests).
@Suite struct RuleSetTests {
    static let table = TableSchema(
        database: "audit", name: "tracing_events",
        columns: [Column(name: "pid", type: .uint32), Column(name: "comm", type: .string), Column(name: "filename", type: .string),
                  Column(name: "container_id", type: .string)],
        ddl: "")
    static let tables = ["tracing_events": table]

    func build(_ text: String, checker: RuleSet.TypeChecker = { _, _ in "UInt8" }) -> RuleSet {
        RuleSet.build([("site.yaml", text)], tables: Self.tables, check: checker)
    }

    static func rule(_ name: String, condition: String, table: String = "tracing_events", output: String = "%comm") -> String {
        """
          - name: \(name)
            description: d
            severity: high
            tags: [T1059]
            table: \(table)
            condition: "\(condition)"
            output: "\(output)"
        """
    }

    @Test func listsAndMacrosExpandOutsideStringsOnly() throws {
        let set = build("""
            lists:
              shells: [bash, "it's"]
            macros:
              inside: container_id != ''
              shell_inside: $inside AND comm IN $shells
            rules:
            \(Self.rule("r", condition: "$shell_inside AND filename != '$inside'"))
            """)
        #expect(set.problems.isEmpty, "\(set.problems)")
        let rule = try #require(set.rules.first)
        #expect(rule.condition == "((container_id != '') AND comm IN ['bash', 'it\\'s']) AND filename != '$inside'")
        #expect(rule.tags == ["T1059"] && rule.severity == .high && rule.place == "site.yaml:7 (r)")
    }

    @Test func aBadRuleIsRefusedWithItsPlaceAndTheOthersStillLoad() {
        let set = build("""
            macros:
              loop: $loop AND 1
            rules:
            \(Self.rule("good", condition: "pid = 1"))
            \(Self.rule("unknown_table", condition: "1", table: "nope_events"))
            \(Self.rule("unknown_macro", condition: "$missing"))
            \(Self.rule("cycle", condition: "$loop"))
            \(Self.rule("two_statements", condition: "1; DROP TABLE audit.tracing_events"))
            \(Self.rule("escapes", condition: "1) UNION ALL SELECT 1 FROM system.tables WHERE (1"))
            \(Self.rule("subquery", condition: "pid IN (SELECT 1)"))
            \(Self.rule("reads_files", condition: "file('/etc/shadow') != ''"))
            \(Self.rule("bad_output", condition: "1", output: "%nosuch"))
            """)
        #expect(set.rules.map(\.name) == ["good"])
        let reasons = Dictionary(set.problems.map { ($0.place.split(separator: "(").last.map { String($0.dropLast()) } ?? "", $0.reason) }, uniquingKeysWith: { a, _ in a })
        #expect(reasons["unknown_table"]?.hasPrefix("unknown table nope_events") == true)
        #expect(reasons["unknown_macro"] == "condition: $missing is neither a list nor a macro")
        #expect(reasons["cycle"]?.contains("macro loop uses itself") == true)
        #expect(reasons["two_statements"] == "condition: a condition is one expression (no ';')")
        #expect(reasons["escapes"] == "condition: unbalanced brackets: a ')' closes nothing")
        #expect(reasons["subquery"]?.contains("no SELECT") == true)
        #expect(reasons["reads_files"] == "condition: file() reads or writes files on this host")
        #expect(reasons["bad_output"] == "output names %nosuch, which is not a column of tracing_events")
        #expect(set.problems.count == 8)
    }

    @Test func theEnginesVerdictRefusesNonBooleansAndUnknownColumns() {
        let set = build("rules:\n" + Self.rule("sum", condition: "pid + 1") + "\n" + Self.rule("typo", condition: "pdi = 1")) { condition, _ throws(StorageError) in
            if condition.contains("pdi") { throw StorageError("Code: 47. DB::Exception: Unknown expression identifier `pdi`. In scope SELECT (pdi = 1). (UNKNOWN_IDENTIFIER)") }
            return "UInt64"
        }
        #expect(set.rules.isEmpty)
        #expect(set.problems.map(\.reason) == [
            "condition is UInt64, not a boolean (a comparison, IN, LIKE, a function returning Bool or UInt8)",
            "condition: Unknown expression identifier `pdi`.",
        ])
    }

    @Test func aLaterFileReplacesARuleOrAListOfTheSameName() throws {
        let first = "lists:\n  names: [a]\nrules:\n" + Self.rule("r", condition: "comm IN $names")
        let second = "lists:\n  names: [b]\nrules:\n" + Self.rule("r", condition: "comm IN $names AND pid > 1")
        let set = RuleSet.build([("one.yaml", first), ("two.yaml", second)], tables: Self.tables, check: { _, _ in "Bool" })
        #expect(set.rules.count == 1)
        #expect(try #require(set.rules.first).condition == "comm IN ['b'] AND pid > 1")
        let off = RuleSet.build([("one.yaml", first)], disabled: ["r"], tables: Self.tables, check: { _, _ in "Bool" })
        #expect(off.rules.isEmpty && off.problems.isEmpty)
    }

    @Test func malformedFilesAndFieldsAreOneLineEach() {
        #expect(build("rules: [").problems.first?.reason.hasPrefix("not YAML") == true)
        #expect(build("- a\n- b").problems.first?.reason == "a rules file is a mapping of lists, macros and rules")
        #expect(build("rulez: []").problems.first?.reason == "unknown key rulez (lists, macros, rules)")
        let severity = build("rules:\n  - {name: x, description: d, severity: dire, table: tracing_events, condition: '1', output: o}")
        #expect(severity.problems.first?.reason == "severity must be one of info, low, medium, high, critical (got dire)")
        let missing = build("rules:\n  - {name: x, description: d, severity: low, table: tracing_events, output: o}")
        #expect(missing.problems.first?.reason == "condition is missing")
    }

    @Test func outputTemplatesNameColumnsAndEscapeText() {
        #expect(OutputTemplate.columns("%comm opened %filename (100%% sure, %)") == ["comm", "filename"])
        #expect(OutputTemplate.sql("it's %comm") == "concat('it\\'s ', ifNull(toString(`comm`), ''))")
    }

    @Test func theDefaultRulesetParsesAndNamesOnlyKnownTables() {
        let set = RuleSet.build(RuleSet.builtInFiles, tables: Dictionary(uniqueKeysWithValues: ["tracing_events", "network_events", "ptrace_events", "mmap_events", "mount_events", "resource_events"].map {
            ($0, TableSchema(database: "audit", name: $0, columns: [], ddl: ""))
        }), check: { _, _ in "UInt8" })
        // Columns are not known to this stand-in, so only output templates may complain.
        #expect(set.problems.allSatisfy { $0.reason.hasPrefix("output names") }, "\(set.problems)")
        #expect(set.problems.count + set.rules.count >= 18)
    }
}
