# Rosenbrock's function in four dimensions, each in [-2, 2].
param.set <- makeParamSet(
  makeNumericParam("x1", lower = -2, upper = 2), makeNumericParam("x2", lower = -2, upper = 2),
  makeNumericParam("x3", lower = -2, upper = 2), makeNumericParam("x4", lower = -2, upper = 2)
)
