# Hartmann-6's domain: six parameters in [0, 1].
param.set <- makeParamSet(
  makeNumericParam("x1", lower = 0, upper = 1), makeNumericParam("x2", lower = 0, upper = 1),
  makeNumericParam("x3", lower = 0, upper = 1), makeNumericParam("x4", lower = 0, upper = 1),
  makeNumericParam("x5", lower = 0, upper = 1), makeNumericParam("x6", lower = 0, upper = 1)
)
