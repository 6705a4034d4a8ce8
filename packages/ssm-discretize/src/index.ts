export {
  DISCRETIZATION_METHODS,
  type DiscreteStateSpace,
  type DiscretizationMethod,
  type DiscretizeOptions,
  MAX_DENSE_STATE,
  type StateSpace,
  discretize,
} from './discretize';
export {
  type ComplexVector,
  type DiagonalDiscrete,
  type DiagonalDiscretizeOptions,
  type RealVectorLike,
  type VectorLike,
  discretizeDiagonal,
} from './diagonal';
export {
  type ComplexMatrix,
  type Matrix,
  type MatrixLike,
  eighHermitian,
  expm,
  identity,
  matmul,
  toMatrix,
  toRows,
} from './linalg';
