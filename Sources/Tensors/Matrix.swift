/// A dense row-major matrix of `Float`, the one buffer type every pipeline stage exchanges.
///
/// Layout: row-major, rows are time steps and columns are channels, so element (t, c) is
/// `data[t * cols + c]`. Feature frames (time x mel bins), encoder activations
/// (time x channels) and CTC posteriors (time x vocabulary) all use it.
public struct Matrix: Sendable, Equatable {
    public var rows: Int
    public var cols: Int
    public var data: [Float]

    /// A zero-filled `rows` x `cols` matrix.
    public init(rows: Int, cols: Int) {
        precondition(rows >= 0 && cols >= 0, "negative matrix shape \(rows)x\(cols)")
        self.rows = rows
        self.cols = cols
        self.data = [Float](repeating: 0, count: rows * cols)
    }

    /// Wraps `data`, which must hold exactly `rows * cols` values in row-major order.
    public init(rows: Int, cols: Int, data: [Float]) {
        precondition(data.count == rows * cols, "matrix data has \(data.count) values, shape \(rows)x\(cols) needs \(rows * cols)")
        self.rows = rows
        self.cols = cols
        self.data = data
    }

    public subscript(row: Int, col: Int) -> Float {
        get { data[row * cols + col] }
        set { data[row * cols + col] = newValue }
    }

    /// A copy of one row.
    public func row(_ r: Int) -> ArraySlice<Float> { data[(r * cols)..<((r + 1) * cols)] }

    /// Rows `range` as a new matrix.
    public func rows(_ range: Range<Int>) -> Matrix {
        Matrix(rows: range.count, cols: cols, data: Array(data[(range.lowerBound * cols)..<(range.upperBound * cols)]))
    }

    /// Appends the rows of `other`, which must have the same number of columns.
    public mutating func append(rowsOf other: Matrix) {
        if other.rows == 0 { return }
        precondition(other.cols == cols || rows == 0, "appending \(other.cols)-column rows to a \(cols)-column matrix")
        if rows == 0 { cols = other.cols }
        data.append(contentsOf: other.data)
        rows += other.rows
    }

    /// Multiplies every element by `factor`, in place.
    public mutating func scale(by factor: Float) {
        data.withUnsafeMutableBufferPointer { d in for i in 0..<d.count { d[i] *= factor } }
    }

    /// Adds `other` element-wise, in place; shapes must match.
    public mutating func add(_ other: Matrix) {
        precondition(rows == other.rows && cols == other.cols, "adding a \(other.rows)x\(other.cols) matrix to a \(rows)x\(cols) one")
        data.withUnsafeMutableBufferPointer { d in
            other.data.withUnsafeBufferPointer { o in for i in 0..<d.count { d[i] += o[i] } }
        }
    }

    /// Largest absolute element-wise difference; shapes must match. Infinity when any difference is NaN
    /// (Swift's `max` drops a NaN, and a test comparing an all-NaN output would pass).
    public func maxAbsDifference(_ other: Matrix) -> Float {
        precondition(rows == other.rows && cols == other.cols, "shape \(rows)x\(cols) vs \(other.rows)x\(other.cols)")
        var m: Float = 0
        for i in 0..<data.count {
            let d = abs(data[i] - other.data[i])
            if d.isNaN { return .infinity }
            m = max(m, d)
        }
        return m
    }
}

/// An n-dimensional tensor of `Float` in row-major (C) order: a model parameter or a stored statistic.
public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(data.count == shape.reduce(1, *), "tensor data has \(data.count) values, shape \(shape) needs \(shape.reduce(1, *))")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    public var count: Int { data.count }
}
