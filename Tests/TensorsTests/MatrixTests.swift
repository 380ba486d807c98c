import Testing
@testable import Tensors

@Suite struct MatrixTests {
    @Test func rowMajorIndexing() {
        var m = Matrix(rows: 2, cols: 3)
        m[1, 2] = 5
        #expect(m.data[5] == 5)
        #expect(Array(m.row(1)) == [0, 0, 5])
    }

    @Test func appendAndSliceRoundTrip() {
        var a = Matrix(rows: 0, cols: 2)
        a.append(rowsOf: Matrix(rows: 1, cols: 2, data: [1, 2]))
        a.append(rowsOf: Matrix(rows: 2, cols: 2, data: [3, 4, 5, 6]))
        #expect(a.rows == 3)
        #expect(a.rows(1..<3) == Matrix(rows: 2, cols: 2, data: [3, 4, 5, 6]))
    }
}

@Suite struct CountedTests {
    @Test func oneIsSingularEverythingElsePlural() {
        #expect(counted(1, "utterance") == "1 utterance")
        #expect(counted(0, "utterance") == "0 utterances")
        #expect(counted(2, "word") == "2 words")
        #expect(counted(1, "child", plural: "children") == "1 child")
        #expect(counted(3, "child", plural: "children") == "3 children")
    }

    /// A NaN anywhere is an infinite difference: Swift's `max` drops NaN, so an all-NaN output used to
    /// compare as equal to anything.
    @Test func aNaNDifferenceIsInfinite() {
        let a = Matrix(rows: 1, cols: 3, data: [1, 2, 3])
        #expect(a.maxAbsDifference(Matrix(rows: 1, cols: 3, data: [1, 2, 3.5])) == 0.5)
        #expect(a.maxAbsDifference(Matrix(rows: 1, cols: 3, data: [.nan, .nan, .nan])) == .infinity)
        #expect(a.maxAbsDifference(Matrix(rows: 1, cols: 3, data: [1, .nan, 3])) == .infinity)
    }
}
