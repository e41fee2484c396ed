param.set <- makeParamSet(
  makeNumericParam("x1", lower = 0, upper = 1),
  makeNumericParam("x2", lower = 0, upper = 1)
)
