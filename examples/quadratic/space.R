# Search space of the quadratic example: the bowl's minimum is at x = 1, y = -2.
param.set <- makeParamSet(
  makeNumericParam("x", lower = -5, upper = 5),
  makeNumericParam("y", lower = -5, upper = 5)
)
