import Foundation
import InfraSightSchema
@testable import InfraSightStorage
import Testing

/// The plan and the ALTER of a table migration, from `system.columns` output as ClickHouse
/// writes it (the real stores are exercised in IntegrationTests/MigrationTests).
@Suite struct TableMigrationTests {
    static let table = try! TableSchema(ddl: """
        CREATE TABLE IF NOT EXISTS audit.t (
          pid UInt32, comm String, wall_time_dt DateTime64(3), labels JSON, resolved Nullable(String),
          syscall String, x UInt32
        ) ENGINE = MergeTree() ORDER BY pid
        """)

    static func stored(_ tsv: String) -> [String: String] { TableMigration.parseColumns(Data(tsv.utf8)) }

    @Test func theMissingColumnsAreAddedInTheDDLsOrderEachAfterItsPredecessor() throws {
        let stored = Self.stored("pid\tUInt32\ncomm\tString\nwall_time_dt\tDateTime64(3)\nlabels\tJSON\nresolved\tNullable(String)\n")
        let m = try #require(try TableMigration(Self.table, stored: stored))
        #expect(m.added.map(\.column.name) == ["syscall", "x"])
        #expect(m.statement == "ALTER TABLE `audit`.`t` ADD COLUMN IF NOT EXISTS `syscall` String AFTER `resolved`, ADD COLUMN IF NOT EXISTS `x` UInt32 AFTER `syscall`")
        #expect(m.note == "table audit.t: added columns syscall String, x UInt32 (the store had an older definition)")
    }

    @Test func aColumnMissingInTheMiddleFollowsItsPredecessorAndOneColumnIsSingular() throws {
        let stored = Self.stored("pid\tUInt32\ncomm\tString\nwall_time_dt\tDateTime64(3)\nlabels\tJSON\nsyscall\tString\nx\tUInt32\n")
        let m = try #require(try TableMigration(Self.table, stored: stored))
        #expect(m.statement == "ALTER TABLE `audit`.`t` ADD COLUMN IF NOT EXISTS `resolved` Nullable(String) AFTER `labels`")
        #expect(m.note == "table audit.t: added column resolved Nullable(String) (the store had an older definition)")
    }

    @Test func aMissingFirstColumnHasNoPositionAndAnOldServerGetsNoIfNotExists() throws {
        let stored = Self.stored("comm\tString\nwall_time_dt\tDateTime64(3)\nlabels\tJSON\nresolved\tNullable(String)\nsyscall\tString\nx\tUInt32\n")
        let m = try #require(try TableMigration(Self.table, stored: stored, ifNotExists: false))
        #expect(m.statement == "ALTER TABLE `audit`.`t` ADD COLUMN `pid` UInt32")
    }

    @Test func onAClusterTheAlterRunsOnEveryNode() throws {
        let stored = Self.stored("pid\tUInt32\ncomm\tString\nwall_time_dt\tDateTime64(3)\nlabels\tJSON\nresolved\tNullable(String)\nsyscall\tString\n")
        let m = try #require(try TableMigration(Self.table, stored: stored, cluster: "prod"))
        #expect(m.statement == "ALTER TABLE `audit`.`t` ON CLUSTER prod ADD COLUMN IF NOT EXISTS `x` UInt32 AFTER `syscall`")
        #expect(m.note == "table audit.t on cluster prod: added column x UInt32 (the store had an older definition)")
    }

    @Test func aTableWithEveryColumnNeedsNothingAndColumnsOnlyTheStoreHasAreLeftAlone() throws {
        let stored = Self.stored("pid\tUInt32\nlegacy\tString\ncomm\tString\nwall_time_dt\tDateTime64(3, 'UTC')\nlabels\tObject('json')\nresolved\tNullable(String)\nsyscall\tString\nx\tUInt32\n")
        #expect(try TableMigration(Self.table, stored: stored) == nil)
    }

    @Test func anOlderServersMappedTypesAreCompared() throws {
        // What HTTPStore.holding gives for a server before 20.1: DateTime, String.
        let held = Self.table.mappingTypes { t in t == .json ? .string : (t == .dateTime64(precision: 3) ? .dateTime : t) }
        let stored = Self.stored("pid\tUInt32\ncomm\tString\nwall_time_dt\tDateTime\nlabels\tString\nresolved\tNullable(String)\n")
        let m = try #require(try TableMigration(held, stored: stored, ifNotExists: false))
        #expect(m.statement == "ALTER TABLE `audit`.`t` ADD COLUMN `syscall` String AFTER `resolved`, ADD COLUMN `x` UInt32 AFTER `syscall`")
        // The unmapped DDL conflicts with that table: DateTime64 is not DateTime.
        #expect(throws: ColumnConflict.self) { try TableMigration(Self.table, stored: stored) }
    }

    @Test func aTypeConflictNamesTheColumnAndChangesNothing() throws {
        let stored = Self.stored("pid\tString\ncomm\tString\n")
        do {
            _ = try TableMigration(Self.table, stored: stored)
            Issue.record("no conflict")
        } catch {
            #expect(error == ColumnConflict(table: "audit.t", column: "pid", storedType: "String", declaredType: .uint32))
            #expect(error.description.hasPrefix("table audit.t conflicts with its DDL: column pid is String in the store, UInt32 in the DDL"))
        }
    }

    /// `apply` reads, refuses a conflict before any ALTER, alters once, and takes a column
    /// another process added first as done.
    @Test func applyReadsThenAltersOnceAndARaceLostIsNoFailure() throws {
        var columns = "pid\tUInt32\ncomm\tString\nwall_time_dt\tDateTime64(3)\nlabels\tJSON\nresolved\tNullable(String)\n"
        var statements: [String] = []
        func read(_ sql: String) throws(StorageError) -> Data {
            #expect(sql == "SELECT name, type FROM system.columns WHERE database = 'audit' AND table = 't'")
            return Data(columns.utf8)
        }
        let m = try TableMigration.apply(Self.table, cluster: nil, ifNotExists: true, read: read, alter: { (sql: String) throws(StorageError) in statements.append(sql) })
        #expect(m?.added.count == 2)
        #expect(statements.count == 1)

        // Someone else added the columns between our read and our ALTER (an old server
        // without IF NOT EXISTS refuses the duplicate): nothing to report, no failure.
        let raced = try TableMigration.apply(Self.table, cluster: nil, ifNotExists: false, read: read, alter: { (sql: String) throws(StorageError) in
            columns += "syscall\tString\nx\tUInt32\n"
            throw StorageError("Code: 44. DB::Exception: Cannot add column syscall: column with this name already exists")
        })
        #expect(raced == nil)

        columns = "pid\tString\n"
        statements = []
        #expect(throws: PrepareError.self) {
            try TableMigration.apply(Self.table, cluster: nil, ifNotExists: true, read: read, alter: { (sql: String) throws(StorageError) in statements.append(sql) })
        }
        #expect(statements.isEmpty)

        columns = ""
        do {
            _ = try TableMigration.apply(Self.table, cluster: nil, ifNotExists: true, read: read, alter: { (sql: String) throws(StorageError) in statements.append(sql) })
            Issue.record("a missing table was migrated")
        } catch {
            #expect(error.description == "table audit.t is not in the store's system.columns")
        }
    }
}
