# Branin's domain.
param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10),
  makeNumericParam("x2", lower = 0, upper = 15)
)
