import InfraSightStorage
import Testing

/// The checks a statement from outside the program passes before a store runs it, and the
/// lexer they stand on (its token boundaries must be ClickHouse's).
@Suite struct ReadOnlyQueryTests {
    /// The one-line refusal, or nil when the statement is accepted.
    func refusal(_ sql: String, format: String = "TSV") -> String? {
        do {
            _ = try ReadOnlyQuery(sql, format: format)
            return nil
        } catch {
            return error.description
        }
    }

    /// Token texts and kinds, whitespace left out.
    func tokens(_ sql: String) throws -> [String] {
        let bytes = Array(sql.utf8)
        return try SQLLexer.tokens(sql).filter { $0.kind != .whitespace }.map { "\($0.kind):\(String(decoding: bytes[$0.range], as: UTF8.self))" }
    }

    @Test func aReadOnlyStatementIsSplitIntoSQLAndFormat() throws {
        let q = try ReadOnlyQuery("select ';' as s, 'it''s', 'a\\'; DROP TABLE t' FORMAT JSONEachRow ;", format: "TSV")
        #expect(q.sql == "select ';' as s, 'it''s', 'a\\'; DROP TABLE t'")
        #expect(q.format == "JSONEachRow")
        #expect(q.keyword == "SELECT")
        let plain = try ReadOnlyQuery("SELECT 1 -- the end\n", format: "CSVWithNames")
        #expect(plain.sql == "SELECT 1")
        #expect(plain.format == "CSVWithNames")
        #expect(try ReadOnlyQuery("(SELECT 1) UNION ALL (SELECT 2)").keyword == "SELECT")
        #expect(try ReadOnlyQuery("WITH x AS (SELECT 1) SELECT * FROM x").keyword == "WITH")
        #expect(try ReadOnlyQuery("show tables from audit").readsThroughArrow)
        #expect(try ReadOnlyQuery("desc audit.tracing_events").keyword == "DESC")
    }

    @Test func textInsideStringsCommentsAndHeredocsIsNotCode() throws {
        for sql in [
            "SELECT 'x; INTO OUTFILE file(' AS a",
            "SELECT \"file\", `url` FROM t",
            "SELECT $$it's; INTO OUTFILE '/tmp/x'$$",
            "SELECT $tag$ file('/etc/passwd'); $tag$",
            "SELECT 1 /* ; INTO OUTFILE 'x' */",
            "SELECT 1 /* /* nested */ ; INTO OUTFILE 'x' */",
            "SELECT 1 -- ; DROP TABLE t",
            "SELECT 1 // ; DROP TABLE t",
            "SELECT 1 # ; DROP TABLE t",
            "SELECT 1 #!; DROP TABLE t",
            // Names that only start like a denied one, and calls that are not calls.
            "SELECT filesystemAvailable(), URLHierarchy('http://a/b'), format('{}', 1), s3_key FROM t",
        ] {
            #expect(refusal(sql) == nil, "\(sql)")
        }
    }

    @Test func everyBypassIsRefusedWithANamedReason() {
        let multi = "refused: more than one statement (one statement per query; a ';' or \\G ends it)"
        let outfile = "refused: INTO OUTFILE writes a file on this host; queries here only read (use --format and redirect the output)"
        let cases: [(String, String)] = [
            ("SELECT 1; CREATE TABLE audit.x (a UInt8) ENGINE = Memory", multi),
            ("SELECT 1 \\G SELECT 2", multi),
            ("SELECT 1 #x; SELECT 2", multi),
            ("SHOW TABLES INTO OUTFILE '/tmp/x'", outfile),
            ("SELECT 1 INTO\n/* */ OUTFILE '/tmp/x'", outfile),
            ("SELECT 1 INTO `OUTFILE` '/tmp/x'", outfile),
            // A heredoc ends where ClickHouse ends it: the quote inside it opens nothing.
            ("SELECT $a$'$a$, 1 INTO OUTFILE '/tmp/x' --'", outfile),
            // A nested comment closed once is still open in ClickHouse: nothing hides after it.
            ("SELECT 1 /* /* */ INTO OUTFILE 'x'", "refused: a quoted string, quoted identifier or comment is not closed"),
            ("SELECT 'abc", "refused: a quoted string, quoted identifier or comment is not closed"),
            ("SELECT * FROM file('/etc/passwd')", "refused: file() reads or writes files on this host; queries here read only the stored tables"),
            ("SELECT file('/etc/shadow')", "refused: file() reads or writes files on this host; queries here read only the stored tables"),
            ("SELECT * FROM FILE /* x */ ('/etc/passwd')", "refused: FILE() reads or writes files on this host; queries here read only the stored tables"),
            ("SELECT * FROM `fi\\x6ce`('/etc/passwd')", "refused: file() reads or writes files on this host; queries here read only the stored tables"),
            ("SELECT file\u{00A0}('/etc/passwd')", "refused: file() reads or writes files on this host; queries here read only the stored tables"),
            ("SELECT * FROM \"url\"('http://10.0.0.1/', TSV, 'a String')", "refused: url() connects to other servers; queries here read only the stored tables"),
            ("SELECT * FROM s3Cluster('c', 'http://x/y')", "refused: s3Cluster() connects to other servers; queries here read only the stored tables"),
            ("SELECT * FROM remoteSecure('h', system.one)", "refused: remoteSecure() connects to other servers; queries here read only the stored tables"),
            ("SELECT * FROM executable('x.sh', TSV, 'a String')", "refused: executable() runs programs on this host; queries here read only the stored tables"),
            ("SELECT * FROM icebergS3('http://x/t')", "refused: icebergS3() reads data lakes in files or object storage; queries here read only the stored tables"),
            ("SELECT * FROM eval('SELECT 1')", "refused: eval() runs SQL given as a string, out of reach of these checks; queries here read only the stored tables"),
            ("DESCRIBE TABLE file('/etc/passwd')", "refused: file() reads or writes files on this host; queries here read only the stored tables"),
            ("DROP TABLE audit.tracing_events", "refused: only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) are accepted here; got DROP"),
            ("insert into t values (1)", "refused: only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) are accepted here; got INSERT"),
            ("SET readonly = 0", "refused: only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) are accepted here; got SET"),
            (" ;; -- nothing", "refused: no statement"),
        ]
        for (sql, reason) in cases {
            #expect(refusal(sql) == reason, "\(sql)")
        }
    }

    @Test func aFormatIsANameAndNothingElse() {
        #expect(refusal("SELECT 1", format: "TSV') SELECT 1 --") == "refused: 'TSV') SELECT 1 --' is not a ClickHouse format name (letters, digits and _ only)")
        #expect(refusal("SELECT 1 FORMAT `JSON x`") == "refused: 'JSON x' is not a ClickHouse format name (letters, digits and _ only)")
        #expect(refusal("SELECT 1", format: "") == "refused: '' is not a ClickHouse format name (letters, digits and _ only)")
        #expect(refusal("SELECT 1", format: "TabSeparatedWithNamesAndTypes") == nil)
        #expect(ReadOnlyQuery.isFormatName("Parquet") && !ReadOnlyQuery.isFormatName("JSON;"))
    }

    @Test func tokenBoundariesAreClickHouses() throws {
        // An exponent takes its sign; after a dot only an integer (x.1.1 is two accesses),
        // so `--` after `t.1e` starts a comment.
        #expect(try tokens("SELECT 1e-5, t.1e--x\n") == ["word:SELECT", "number:1e-5", "symbol:,", "word:t", "dot:.", "number:1e", "comment:--x"])
        #expect(try tokens("x.1.1, .5") == ["word:x", "dot:.", "number:1", "dot:.", "number:1", "symbol:,", "number:.5"])
        // `$` inside words; a lone `$`; a heredoc whose tag never closes is a word.
        #expect(try tokens("a$b $ $x") == ["word:a$b", "symbol:$", "word:$x"])
        #expect(try tokens("x'4142' b'01' 0x1F 1_000") == ["string:x'4142'", "string:b'01'", "number:0x1F", "number:1_000"])
        #expect(try tokens("a->b /*/**/*/c") == ["word:a", "symbol:->", "word:b", "comment:/*/**/*/", "word:c"])
        #expect(throws: SQLLexer.Failure.unterminatedString) { try SQLLexer.tokens("x'4G'") }
        #expect(throws: SQLLexer.Failure.unterminatedQuotedIdentifier) { try SQLLexer.tokens("SELECT `a") }
        #expect(throws: SQLLexer.Failure.unterminatedComment) { try SQLLexer.tokens("SELECT /* a") }
    }
}
